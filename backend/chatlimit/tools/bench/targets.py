"""The benchmark's targets, in one place for the report and the chart."""

MEMORY_RATIO, REDIS_RATIO, REDIS_ROUND_TRIPS, REDIS_P99_FACTOR = 0.85, 0.60, 1.0, 2.0
