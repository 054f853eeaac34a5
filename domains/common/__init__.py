"""Domain-agnostic machinery: stage contract and runner, params, gate, trainer, report."""
