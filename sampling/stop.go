package sampling

import (
	"slices"
	"strings"
	"unicode/utf8"
)

// StopMatcher finds stop strings in streamed text. Push the text of each generated token as
// it is decoded; Push returns the text that is final, holding back only the longest suffix
// that could still begin a stop string (never part of a UTF-8 character when the pushed
// pieces are whole characters). When a stop string occurs, everything from its start on is
// dropped and generation should end with FinishStop; when generation ends otherwise, Flush
// returns what was held back.
//
// A stop string spanning several tokens is found; when several occur, the text ends at the
// earliest. A matcher with no stop strings passes text through.
type StopMatcher struct {
	stops   []string
	longest int    // the length of the longest stop string
	pending string // held-back text
	stopped bool
}

// NewStopMatcher returns a matcher for stops, each a non-empty UTF-8 string; otherwise it
// returns a *ParamError for "stop". (Params.Validate also limits their number to 16.)
func NewStopMatcher(stops []string) (*StopMatcher, error) {
	if err := validStops(stops); err != nil {
		return nil, err
	}
	m := &StopMatcher{stops: slices.Clone(stops)}
	for _, s := range stops {
		m.longest = max(m.longest, len(s))
	}
	return m, nil
}

// Push adds text, the next piece of decoded output, and returns the text that became final
// and whether a stop string has occurred. Once stopped, Push returns "", true.
func (m *StopMatcher) Push(text string) (emit string, stopped bool) {
	if m.stopped {
		return "", true
	}
	s := text
	if m.pending != "" {
		s = m.pending + text
	}
	m.pending = ""
	// The earliest occurrence of any stop string. Every occurrence starts inside s: text
	// before s was emitted only once no stop string could begin in it.
	at := -1
	for _, stop := range m.stops {
		if i := strings.Index(s, stop); i >= 0 && (at < 0 || i < at) {
			at = i
		}
	}
	if at >= 0 {
		m.stopped = true
		return s[:at], true
	}
	// Hold back the longest suffix that is a proper prefix of a stop string.
	for i := max(0, len(s)-m.longest+1); i < len(s); i++ {
		if !utf8.RuneStart(s[i]) {
			continue
		}
		for _, stop := range m.stops {
			if strings.HasPrefix(stop, s[i:]) {
				m.pending = s[i:]
				return s[:i], false
			}
		}
	}
	return s, false
}

// Flush returns the held-back text and clears it: call it when generation ends for a reason
// other than a stop string. After a stop it returns "".
func (m *StopMatcher) Flush() string {
	p := m.pending
	m.pending = ""
	return p
}

// Stopped reports whether a stop string has occurred.
func (m *StopMatcher) Stopped() bool { return m.stopped }
