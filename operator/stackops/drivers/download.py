"""Files the operator fetches by URL and SHA-256 (XenServer updates): streamed to a temporary file, hashed on the
way, kept only when the hash matches."""
from __future__ import annotations

import asyncio
import hashlib
import tempfile
from typing import IO

import aiohttp

CHUNK = 1 << 20
MAX_BYTES = 8 << 30  # an update ISO is well below this; a URL that streams forever is cut off


class DownloadError(Exception):
    """The file could not be fetched (the URL is never part of the message: it may carry a token)."""


class ChecksumMismatch(DownloadError):
    """The file fetched is not the one the SHA-256 names."""


async def download(url: str, sha256: str, what: str, *, timeout: float = 1800.0,
                   max_bytes: int = MAX_BYTES) -> IO[bytes]:
    """The file at `url` in an anonymous temporary file (rewound; closing it removes it), once its SHA-256 is
    `sha256`. `what` names it in errors."""
    digest = hashlib.sha256()
    target = tempfile.TemporaryFile()
    size = 0
    try:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=timeout)) as session:
            async with session.get(url) as response:
                if response.status != 200:
                    raise DownloadError(f"{what}: the server answered HTTP {response.status}")
                async for chunk in response.content.iter_chunked(CHUNK):
                    size += len(chunk)
                    if size > max_bytes:
                        raise DownloadError(f"{what}: larger than {max_bytes} bytes")
                    digest.update(chunk)
                    await asyncio.to_thread(target.write, chunk)
    except (aiohttp.ClientError, ValueError) as error:
        target.close()
        raise DownloadError(f"{what}: {type(error).__name__}") from None
    except asyncio.TimeoutError:
        target.close()
        raise DownloadError(f"{what}: timed out") from None
    except BaseException:
        target.close()
        raise
    if digest.hexdigest() != sha256.lower():
        target.close()
        raise ChecksumMismatch(f"{what}: SHA-256 is {digest.hexdigest()}, the spec says {sha256.lower()}")
    target.seek(0)
    return target
