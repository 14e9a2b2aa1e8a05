"""Great Expectations: the suites under `expectations/`, batched validation and Data Docs."""
