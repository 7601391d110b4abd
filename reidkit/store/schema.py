"""Names and versions of the store layout (documented in docs/store.md)."""

SCHEMA_VERSION = 1
FORMAT_NAME = "reidkit-store"
PARTS_SUFFIX = ".parts"  # sidecar folder beside the store file: masks, prompts, generated runs

# Per-image columns under /images (all of length N).
INT_COLUMNS = {
    "pid": "int64",  # raw person id
    "label": "int64",  # contiguous train label, -1 outside the train split
    "camera": "int32",
    "clothes_id": "int64",  # contiguous id of clothes_key, -1 where the dataset has none
    "tracklet": "int64",
    "frame": "int64",
    "height": "int32",
    "width": "int32",
    "source": "int32",  # index into the 'sources' attribute: namespaces person ids when stores combine
}
BOOL_COLUMNS = ("junk", "distractor")
STR_COLUMNS = ("clothes_key", "path", "format")
