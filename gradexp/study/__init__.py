"""Finished runs read back from disk: sweep table, report, figures, dashboard. No torch here."""
