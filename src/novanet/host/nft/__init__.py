"""nftables: the rendered ruleset (spec, render, bridge filters), the backend that
talks to the kernel, its faithful fake, and the realizer facade the agent calls."""
