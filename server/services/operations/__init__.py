"""What the operator runs from the command line besides serving: API keys and `verify`."""
