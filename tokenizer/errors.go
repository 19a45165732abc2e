package tokenizer

import (
	"errors"
	"fmt"
)

var (
	// ErrFormat reports a tokenizer file that cannot be parsed or is inconsistent.
	ErrFormat = errors.New("tokenizer: malformed tokenizer file")
	// ErrUnsupported reports a tokenizer component this package does not implement. The
	// error is an *UnsupportedError naming the component.
	ErrUnsupported = errors.New("tokenizer: unsupported component")
	// ErrNotFound reports a directory without tokenizer.json or tokenizer.model.
	ErrNotFound = errors.New("tokenizer: no tokenizer.json or tokenizer.model")
	// ErrTemplate reports a chat template that cannot be compiled or rendered.
	ErrTemplate = errors.New("tokenizer: chat template")
	// ErrTooLarge reports an input longer than MaxInputBytes.
	ErrTooLarge = errors.New("tokenizer: input too large")
)

// UnsupportedError names a tokenizer component (for example "pre_tokenizer Whitespace") that
// this package does not implement. It matches ErrUnsupported with errors.Is.
type UnsupportedError struct {
	// Component is the section and type of the component, e.g. "normalizer BertNormalizer".
	Component string
}

func (e *UnsupportedError) Error() string {
	return fmt.Sprintf("tokenizer: unsupported component %s", e.Component)
}

// Is reports whether target is ErrUnsupported.
func (e *UnsupportedError) Is(target error) bool { return target == ErrUnsupported }

func unsupported(format string, args ...any) error {
	return &UnsupportedError{Component: fmt.Sprintf(format, args...)}
}

func formatErr(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrFormat, fmt.Sprintf(format, args...))
}
