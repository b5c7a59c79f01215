"""Evaluation: the metric names (metrics), the tasks (STS, retrieval, WikiQA, geometry), the invertibility probe,
the embedders they run on, and the evaluation command (run)."""
