"""Data curation tools behind `t2ibench data filter|caption|stats`: dataset readers for webdataset shards,
image folders with caption sidecars and parquet; size/aspect, perceptual-hash dedup, NSFW and LAION
aesthetic filters; BLIP-2 synthetic captions; the paper's Table 3 dataset statistics."""
