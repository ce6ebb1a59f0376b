"""What every capability uses: settings, storage clients and names, keys, HTTP
plumbing, paging, dead letters and the API models' base."""
