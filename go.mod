module github.com/fathom-llm/fathom

go 1.26.0
