"""Compiles the Python sources of the code package in the working directory into
__pycache__, for nimbus's code cache (crates/store/src/code.rs).

Run as `python -I -S -B -c <this> UID GID` by the server, in the package directory. When
started as root it first becomes UID:GID with no supplementary groups, before touching
anything of the package, so what it writes is bounded by that user's rights: the
package's directories, lent to it for the compile. It never follows a symbolic link: it
does not descend into linked directories, does not compile linked sources, and leaves
alone a directory whose __pycache__ is anything but a real directory. A source that does
not compile is skipped (the import reports it, as without the precompile).
"""

import os
import resource
import stat
import sys

# The compile runs outside any instance's cgroup: bound what one package can make it use.
for limit, value in ((resource.RLIMIT_AS, 2 << 30), (resource.RLIMIT_CPU, 120),
                     (resource.RLIMIT_FSIZE, 64 << 20), (resource.RLIMIT_CORE, 0)):
    resource.setrlimit(limit, (value, value))
# Sources larger than this are left to compile at import, inside the instance's limits.
SOURCE_MAX_BYTES = 4 << 20

uid, gid = int(sys.argv[1]), int(sys.argv[2])
if os.geteuid() == 0:
    os.setgroups([])
    os.setgid(gid)
    os.setuid(uid)
    if 0 in (os.getuid(), os.geteuid(), os.getgid(), os.getegid()):
        sys.exit("could not drop root")

import importlib.util  # noqa: E402  (imported only once unprivileged)
import py_compile  # noqa: E402


def is_real_dir(path):
    try:
        return stat.S_ISDIR(os.lstat(path).st_mode)
    except FileNotFoundError:
        return None


for dirpath, dirnames, filenames in os.walk(".", followlinks=False):
    dirnames[:] = [d for d in dirnames if d != "__pycache__"]
    sources = [
        f for f in filenames
        if f.endswith(".py") and not os.path.islink(os.path.join(dirpath, f))
        and os.lstat(os.path.join(dirpath, f)).st_size <= SOURCE_MAX_BYTES
    ]
    if not sources:
        continue
    cache = os.path.join(dirpath, "__pycache__")
    real = is_real_dir(cache)
    if real is None:
        try:
            os.mkdir(cache, 0o755)
        except OSError:
            continue
    elif not real:
        continue
    for name in sources:
        source = os.path.join(dirpath, name)
        compiled = importlib.util.cache_from_source(source)
        try:
            py_compile.compile(source, cfile=compiled, doraise=True)
        except Exception:
            pass
