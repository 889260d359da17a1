"""The nouns and their rules: owners, bundles, endpoints, tasks, batch jobs. No HTTP, no engine code."""
