"""Pure domain: models, address management rules, modes and errors. Imports nothing of ours."""
