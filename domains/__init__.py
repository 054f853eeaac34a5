"""Applied-AI reference domains: each subpackage is one domain, `common` is the shared machinery."""
