"""`chatlimit bench`: what rate limiting costs, measured with real servers and wrk."""
