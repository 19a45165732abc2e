package constrain

import "errors"

var (
	// ErrUnsupported is matched by the error for a JSON Schema keyword, format or value, or a
	// regular expression feature, that constraints cannot enforce. The error names it.
	ErrUnsupported = errors.New("constrain: unsupported")
	// ErrInvalidSchema is matched by the error for a JSON Schema that is not valid JSON or
	// breaks the rules of JSON Schema (a "required" that is not a list of strings, a $ref
	// that leads nowhere, ...).
	ErrInvalidSchema = errors.New("constrain: invalid JSON Schema")
	// ErrInvalidRegex is matched by the error for a regular expression that does not parse.
	ErrInvalidRegex = errors.New("constrain: invalid regular expression")
	// ErrEmptyLanguage is matched by the error for a constraint that no string satisfies.
	ErrEmptyLanguage = errors.New("constrain: no string satisfies the constraint")
	// ErrTooComplex is matched by the error for a grammar whose automata exceed the size
	// limits.
	ErrTooComplex = errors.New("constrain: grammar too complex")
	// ErrLeftRecursion is returned by Compile for a grammar in which a nonterminal refers to
	// itself before any byte is read.
	ErrLeftRecursion = errors.New("constrain: left-recursive grammar")
	// ErrRejected is matched by the error of Advance for a token the grammar does not allow.
	ErrRejected = errors.New("constrain: token not allowed by the constraint")
)
