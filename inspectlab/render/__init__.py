"""Turning analysis results into terminal tables, JSON, CSV, Markdown, HTML, graphs and reports."""
