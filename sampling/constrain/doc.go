// Package constrain restricts what a model generates to the strings of a grammar: a JSON
// Schema, any JSON object, a regular expression, a choice of strings, or a grammar composed
// of these. It computes, before each sampling step, the set of tokens that keep the output
// a prefix of some string of the grammar, and it allows the end of generation only where
// the output is complete.
//
// # Use
//
// Build a Grammar (JSONSchema, JSONObject, Regex, Choice, Literal, and the combinators Seq,
// Alt, Repeat, Optional, Star, Plus, Recursive), bind it to a tokenizer's vocabulary with
// Vocab.Compile (VocabFor gives the Vocab of a tokenizer), and give the resulting Constraint
// to a request (mixtral.Request.Constraint): it implements sampling.Constraint, and each
// sequence follows its own Matcher. A Matcher can also be driven by hand: Allow fills the
// token mask, Advance moves past the chosen token, Accepting says whether generation may
// end. A constraint may start in the middle of an output (NewMatcherMidText, AdvanceBytes),
// for instance once a model has opened a tool call.
//
// # Design
//
// Everything compiles to one representation over bytes, so that constraints compose: a
// context-free grammar whose nonterminals (rules) are deterministic automata over bytes
// that may also call other rules. Each rule is built by Thompson's construction from the
// grammar's tree (literals, byte classes, concatenation, alternation, bounded and unbounded
// repetition, and calls), made deterministic by the subset construction over byte classes,
// with a call to a rule counted as a symbol of its own, and minimized (Hopcroft). Only
// nonterminals are calls: a grammar without recursion is inlined into one automaton, except
// where it would grow too large (JSON Schema properties with large values, long bounded
// repetitions), which become rules of their own. Rules that can never end are pruned, and
// left recursion is refused, so that every state the matcher reaches can still be completed.
// Text is UTF-8: character classes compile to byte sequences that encode exactly the code
// points of the class (no surrogates, no overlong forms).
//
// At run time the rules form a pushdown automaton. The matcher's state is a set of
// configurations, each the top frame (rule, state) over a stack of pending returns interned
// in an arena, so that equal stacks are equal integers. The set holds every configuration
// reachable without reading a byte (calls pushed, accepting states popped), which carries
// the grammar's remaining nondeterminism (alternatives of anyOf, for instance).
//
// Token masks follow the approach of XGrammar and llguidance. The vocabulary's tokens, as
// the bytes each adds to the output (byte-fallback tokens <0xNN> as their byte, "▁" as a
// space, multi-byte characters possibly split across tokens), are stored in a prefix tree in
// preorder, with the end of each subtree, so that a walk from a frame reads each shared
// prefix once and skips a whole subtree as soon as no configuration survives. For each frame
// (rule, state) the walk sorts the tokens into those allowed whatever lies below the frame
// on the stack (they are read without returning from it), those refused in every context,
// and a short list of uncertain tokens that return from the frame: the walk then continues,
// escaped, from every place a call of the rule returns to, an over-approximation of the
// actual stack that refuses what no context accepts. The result is cached per frame as a
// bitset (XGrammar's context-independent tokens), so a step ORs the bitsets of its
// configurations' top frames and checks only the uncertain tokens against the actual stack.
// The first computation of a frame walks the prefix tree once (about a millisecond for a
// frame inside a string, where nearly every token is allowed, and microseconds elsewhere);
// later steps at the same frame cost a few hundred nanoseconds. A Constraint keeps its
// masks for as long as it lives, and Vocab.Compile caches Constraints by the grammar's
// structure, JSONSchema grammars by the schema's bytes, so a schema seen before starts warm.
//
// End-of-sequence and stop tokens are not in the vocabulary's text: generation adds them to
// the mask exactly where Accepting is true. Special tokens never appear inside a
// constraint. The first token of an output is read as the tokenizer's decoder writes the
// first token of a text (SentencePiece's leading space stripped), so that the returned text
// is a string of the grammar.
//
// # JSON
//
// JSONSchema supports the keywords its documentation lists and refuses every other one
// with an error naming it (ErrUnsupported, inside a *SchemaError that gives the path of the
// subschema), never ignoring a constraint it cannot enforce. What it generates is a subset of
// what the schema accepts, chosen so that generated values are valid and compact: properties
// in schema order, whitespace runs bounded (JSONOptions.MaxBlanks) so that a model cannot
// loop on blanks, no exponents in bounded numbers, patterns matched as a whole.
package constrain
