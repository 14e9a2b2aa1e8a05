"""What users read: run reports, exports, coverage charts and the audit's computation and report."""
