"""Independent OCSF oracle: OCSF 1.1.0 schema files and a JSON Schema generator built on them."""
