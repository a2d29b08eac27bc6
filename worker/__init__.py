"""Celery GPU workers that run paints-undo jobs with the models kept resident."""
