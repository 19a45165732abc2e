// Package engine serves many generation requests at once over one model: it decides which
// tokens each forward step runs and where their keys and values live in the KV cache.
//
// The engine knows a model only through the Model interface: the layout of its paged KV
// cache (block size, number of blocks, bytes per block) and a forward step over a batch of
// tokens, each at a position of a sequence whose block table the engine provides. Its own
// vocabulary is requests: token ids in, sampled token ids out.
//
// The KV cache is one pool of fixed-size blocks, and the engine keeps its one ledger:
//
//   - A sequence takes blocks as it grows; nothing is reserved up front. A request is
//     admitted when the blocks of its prompt that are not already cached are free.
//   - Automatic prefix caching: a full block is known by a hash chained over the previous
//     block's hash and its own token ids. A new request reuses the longest run of cached
//     blocks that starts its prompt (turn k+1 of a chat reuses turn k's prompt and reply),
//     the choices of one request share their prompt's blocks, and blocks no sequence uses
//     stay cached until their room is needed, least recently used first.
//   - With a sliding attention window, blocks that slide out of every token's window are
//     released.
//
// Each step has a token budget. Running decodes go first, then prompt chunks (chunked
// prefill) fill the rest of the same step, first come first served, so a long prompt
// never holds the running streams for longer than one step. When a step finds no free
// block, the most recently admitted running request is preempted: its blocks are
// released, it goes back to the head of the queue, and later its prompt and what it has
// generated so far are computed again (from the prefix cache where its blocks survived).
// Its stream goes on where it stopped, and since its sampler keeps its state, a seeded
// request yields the same tokens as without the preemption. Only a request that could not
// fit in the cache alone fails, with ErrContextLength.
package engine
