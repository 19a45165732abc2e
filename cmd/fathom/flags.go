package main

import (
	"flag"
	"fmt"
	"strings"

	"github.com/fathom-llm/fathom/sampling"
)

// setUsage makes fs's usage message the given lines followed by the flags' defaults.
func setUsage(fs *flag.FlagSet, lines ...string) {
	fs.Usage = func() {
		fmt.Fprintln(fs.Output(), strings.Join(lines, "\n"))
		fs.PrintDefaults()
	}
}

// validSampling reports sampling parameters out of range as a usage error.
func validSampling(p sampling.Params) error {
	if err := p.Validate(); err != nil {
		return fmt.Errorf("%w: %v", errUsage, err)
	}
	return nil
}
