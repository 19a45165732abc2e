// This folder holds the model bundled with the repository for the CLI's default run. It is a
// module of its own so that `go get github.com/fathom-llm/fathom` does not download it.
module github.com/fathom-llm/fathom/models

go 1.26
