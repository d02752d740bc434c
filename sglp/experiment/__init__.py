"""The experiment layer: what turns a composed config into jobs, rows and pages."""
