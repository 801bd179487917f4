"""Reference trainers: recipe dataclasses, accelerate loop, data pipeline and curation tools."""
