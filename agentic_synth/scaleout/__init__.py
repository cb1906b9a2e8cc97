"""Scale-out on Ray Data (the optional ``[ray]`` extra): our engine in
``map_batches`` actors, one Synth each, with stable row ids that are at once the
cache key, the dedup key and Ray's checkpoint id. See docs/scale-out.md.

Importing this package does not import Ray; calling its functions does.
"""

from ._ray import RESULT_COLUMNS, checkpoint_config, generate_ray, with_ids, write_results

__all__ = ["RESULT_COLUMNS", "checkpoint_config", "generate_ray", "with_ids", "write_results"]
