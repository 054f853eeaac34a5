"""`aiflow`, the console script: the top layer, above the domains (`domains/`) and the flows (`flows/`) it drives."""
