"""The sync engine and the hub store: cursors, runs, dead letters, links and canonical records."""
