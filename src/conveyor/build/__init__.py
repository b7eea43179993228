"""Images: build once from a commit, test, store by digest, unpack safely anywhere.

Modules, one concept each:

* :mod:`~conveyor.build.digest`     -- ``sha256:`` digests, canonical manifest JSON
* :mod:`~conveyor.build.archive`    -- reproducible tar.gz writing, safe extraction
* :mod:`~conveyor.build.store`      -- content-addressed artifact store (blobs, manifests, GC)
* :mod:`~conveyor.build.deps`       -- Python dependencies: detection, cache key, pip
* :mod:`~conveyor.build.sources`    -- local directory and git sources, commit info
* :mod:`~conveyor.build.runtime`    -- unpacked image -> isolated Python environment
* :mod:`~conveyor.build.builder`    -- ``build_image``: the build pipeline
* :mod:`~conveyor.build.imagecache` -- the agent's cache of unpacked images
* :mod:`~conveyor.build.worker`     -- one build in a separate process
* :mod:`~conveyor.build.queue`      -- asyncio queue of worker processes

Importing this package is cheap and imports nothing from the control plane, so
the agent can use the image cache.
"""

from conveyor.build.archive import (
    ArchiveError,
    ArchiveLimits,
    pack_directory,
    safe_extract,
)
from conveyor.build.builder import BuildError, BuildResult, LayerResult, build_image
from conveyor.build.digest import (
    DigestError,
    DigestMismatchError,
    canonical_json,
    manifest_digest,
)
from conveyor.build.imagecache import ImageCache
from conveyor.build.runtime import ImageError, PreparedImage
from conveyor.build.sources import (
    CommitInfo,
    GitSource,
    SourceError,
    describe_directory,
)
from conveyor.build.store import ArtifactStore, GcReport

__all__ = [
    "ArchiveError",
    "ArchiveLimits",
    "ArtifactStore",
    "BuildError",
    "BuildResult",
    "CommitInfo",
    "DigestError",
    "DigestMismatchError",
    "GcReport",
    "GitSource",
    "ImageCache",
    "ImageError",
    "LayerResult",
    "PreparedImage",
    "SourceError",
    "build_image",
    "canonical_json",
    "describe_directory",
    "manifest_digest",
    "pack_directory",
    "safe_extract",
]
