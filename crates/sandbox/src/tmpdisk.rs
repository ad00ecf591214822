//! Each instance's `/tmp` on disk, as Lambda's ephemeral storage is: an ext4 filesystem in a
//! sparse image file of the configured size, loop-mounted by the jailer. Its pages are
//! ordinary page cache, written back under memory pressure, so `/tmp` does not count
//! against MemorySize as a tmpfs would; writing past its size is ENOSPC.
//!
//! The server makes images ahead (one short `mkfs.ext4`, a few hundred KB on disk) under a
//! directory of its own; the jailer attaches one to a free loop device with autoclear, mounts
//! it and unlinks the file at once. The kernel then frees everything when the instance's
//! mount namespace goes: nothing is left behind, however the instance or server ends.

use std::io;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// A filesystem image made for one instance's `/tmp`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TmpDisk {
    /// The sparse image file; the jailer unlinks it once it is attached.
    pub image: PathBuf,
    /// Usable size, MB.
    pub size_mb: u32,
}

impl TmpDisk {
    /// Deletes the image if no jailer took it (nothing to do if one did).
    pub fn remove(&self) {
        let _ = std::fs::remove_file(&self.image);
    }
}

/// Where and how this host makes `/tmp` images.
#[derive(Debug, Clone)]
pub struct TmpDisks {
    dir: PathBuf,
    mkfs: PathBuf,
}

/// Where `mkfs.ext4` may be.
const MKFS: &[&str] = &["/usr/sbin/mkfs.ext4", "/sbin/mkfs.ext4"];

impl TmpDisks {
    /// Images under `dir` (created, and emptied of images a killed server left), where this
    /// host can loop-mount them: as root, with `/dev/loop-control` and `mkfs.ext4`.
    pub fn detect(dir: &Path) -> Option<TmpDisks> {
        if !nix::unistd::geteuid().is_root() || !Path::new("/dev/loop-control").exists() {
            return None;
        }
        let mkfs = MKFS.iter().map(PathBuf::from).find(|p| p.is_file())?;
        if dir.exists() {
            std::fs::remove_dir_all(dir).ok()?;
        }
        std::fs::create_dir_all(dir).ok()?;
        let disks = TmpDisks {
            dir: dir.to_owned(),
            mkfs,
        };
        // Proves the whole chain once (an image, a loop device, an ext4 mount), on a probe
        // directory of its own; a host that cannot is told at start.
        let probe = disks.make(1).ok()?;
        let at = dir.join("probe");
        std::fs::create_dir(&at).ok()?;
        let mounted = mount(&probe, &at);
        if mounted.is_ok() {
            let _ = nix::mount::umount2(&at, nix::mount::MntFlags::MNT_DETACH);
        }
        probe.remove();
        let _ = std::fs::remove_dir(&at);
        if let Err(e) = mounted {
            tracing::warn!(error = %e, "loop-mounting a /tmp disk failed: instances get a tmpfs /tmp");
            return None;
        }
        Some(disks)
    }

    /// A fresh image for a `/tmp` of `size_mb`: a sparse copy (a few hundred KB) of the
    /// size's template, made with `mkfs.ext4` the first time the size is asked for. Blocks.
    pub fn make(&self, size_mb: u32) -> io::Result<TmpDisk> {
        let template = self.dir.join(format!("template-{size_mb}.img"));
        if !template.exists() {
            let fresh = self.fresh(size_mb)?;
            // Two makers may race: each renames a complete image, so either wins whole.
            std::fs::rename(&fresh.image, &template)?;
        }
        let disk = self.fresh_name(size_mb);
        let copied = copy_sparse(&template, &disk.image);
        if copied.is_err() {
            disk.remove();
        }
        copied.map(|()| disk)
    }

    fn fresh_name(&self, size_mb: u32) -> TmpDisk {
        let image = self
            .dir
            .join(format!("{}.img", uuid::Uuid::new_v4().simple()));
        TmpDisk { image, size_mb }
    }

    /// A new image made by `mkfs.ext4`.
    fn fresh(&self, size_mb: u32) -> io::Result<TmpDisk> {
        let disk = self.fresh_name(size_mb);
        let made = self.format(&disk);
        if made.is_err() {
            disk.remove();
        }
        made.map(|()| disk)
    }

    fn format(&self, disk: &TmpDisk) -> io::Result<()> {
        let file = std::fs::File::create_new(&disk.image)?;
        file.set_len(image_bytes(disk.size_mb))?;
        drop(file);
        // No journal (nothing in /tmp outlives a crash), no reserved blocks, one inode per
        // 64 KB, inode tables left for the kernel to zero lazily (never: see `mount`).
        let output = std::process::Command::new(&self.mkfs)
            .args(["-q", "-F", "-O", "^has_journal,^resize_inode"])
            .args([
                "-E",
                "lazy_itable_init=1,nodiscard",
                "-m",
                "0",
                "-i",
                "65536",
            ])
            .arg(&disk.image)
            .env_clear()
            .stdin(std::process::Stdio::null())
            .output()?;
        if output.status.success() {
            Ok(())
        } else {
            Err(io::Error::other(format!(
                "mkfs.ext4 failed ({}): {}",
                output.status,
                String::from_utf8_lossy(&output.stderr).trim()
            )))
        }
    }
}

/// Copies `from` to the new file `to`, writing only its data and leaving its holes holes.
fn copy_sparse(from: &Path, to: &Path) -> io::Result<()> {
    use nix::unistd::{lseek, Whence};
    use std::os::fd::AsRawFd;
    use std::os::unix::fs::FileExt;
    let source = std::fs::File::open(from)?;
    let length = source.metadata()?.len();
    let target = std::fs::File::create_new(to)?;
    target.set_len(length)?;
    let fd = source.as_raw_fd();
    let to_offset = |o: u64| i64::try_from(o).map_err(|_| io::Error::other("image too large"));
    let mut buffer = vec![0u8; 1 << 16];
    let mut at: u64 = 0;
    while at < length {
        let data = match lseek(fd, to_offset(at)?, Whence::SeekData) {
            Ok(offset) => offset as u64,
            Err(nix::errno::Errno::ENXIO) => break, // only a hole is left
            Err(e) => return Err(e.into()),
        };
        let hole = (lseek(fd, to_offset(data)?, Whence::SeekHole)? as u64).min(length);
        let mut offset = data;
        while offset < hole {
            let want = usize::try_from(hole - offset)
                .unwrap_or(usize::MAX)
                .min(buffer.len());
            let read = source.read_at(&mut buffer[..want], offset)?;
            if read == 0 {
                break;
            }
            target.write_all_at(&buffer[..read], offset)?;
            offset += read as u64;
        }
        at = hole;
    }
    Ok(())
}

/// The image size that leaves `size_mb` usable after ext4's own share: its inode tables
/// (0.4% here) and the clusters it reserves against delayed-allocation ENOSPC (2%, at
/// most 16 MB).
fn image_bytes(size_mb: u32) -> u64 {
    let mb = u64::from(size_mb);
    (mb + mb / 32 + 6) << 20
}

/// `struct loop_info64` of `<linux/loop.h>`.
#[repr(C)]
struct LoopInfo64 {
    device: u64,
    inode: u64,
    rdevice: u64,
    offset: u64,
    size_limit: u64,
    number: u32,
    encrypt_type: u32,
    encrypt_key_size: u32,
    flags: u32,
    file_name: [u8; 64],
    crypt_name: [u8; 64],
    encrypt_key: [u8; 32],
    init: [u64; 2],
}

/// `struct loop_config` of `<linux/loop.h>`.
#[repr(C)]
struct LoopConfig {
    fd: u32,
    block_size: u32,
    info: LoopInfo64,
    reserved: [u64; 8],
}

/// The device detaches itself when its last user (the mount) goes.
const LO_FLAGS_AUTOCLEAR: u32 = 4;
/// I/O goes to the image without a second page cache.
const LO_FLAGS_DIRECT_IO: u32 = 16;

nix::ioctl_none_bad!(
    /// `LOOP_CTL_GET_FREE`: the number of a free loop device (made if need be).
    loop_ctl_get_free,
    0x4C82
);
nix::ioctl_write_ptr_bad!(
    /// `LOOP_CONFIGURE`: backs a loop device with a file, flags set at once.
    loop_configure,
    0x4C0A,
    LoopConfig
);

/// In the jailer (as root, in its own mount namespace): attaches `disk` to a free loop
/// device, mounts it at `target` for everyone's use (mode 1777, nosuid, nodev) and unlinks
/// the image, which the device now holds until the mount goes.
pub(crate) fn mount(disk: &TmpDisk, target: &Path) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    let image = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(&disk.image)?;
    let control = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/loop-control")?;
    let mut attached = None;
    // Another jailer may take the device between asking and attaching: ask again.
    for _ in 0..64 {
        // SAFETY: LOOP_CTL_GET_FREE takes no argument; `control` is an open loop-control.
        let number = unsafe { loop_ctl_get_free(control.as_raw_fd()) }?;
        let path = PathBuf::from(format!("/dev/loop{number}"));
        let device = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(&path)?;
        let mut result = Err(nix::errno::Errno::EINVAL);
        for flags in [LO_FLAGS_AUTOCLEAR | LO_FLAGS_DIRECT_IO, LO_FLAGS_AUTOCLEAR] {
            let config = loop_config(image.as_raw_fd(), flags)?;
            // SAFETY: `config` is a complete `struct loop_config` that outlives the call,
            // and `device` is an open loop device.
            result = unsafe { loop_configure(device.as_raw_fd(), &config) };
            // A filesystem without direct I/O is still fine, through the page cache.
            if result != Err(nix::errno::Errno::EINVAL) {
                break;
            }
        }
        match result {
            Ok(_) => {
                attached = Some((device, path));
                break;
            }
            Err(nix::errno::Errno::EBUSY) => continue,
            Err(e) => return Err(e.into()),
        }
    }
    let Some((device, path)) = attached else {
        return Err(io::Error::other("no loop device stayed free"));
    };
    std::fs::remove_file(&disk.image)?;
    nix::mount::mount(
        Some(&path),
        target,
        Some("ext4"),
        nix::mount::MsFlags::MS_NOSUID | nix::mount::MsFlags::MS_NODEV,
        // The inode tables stay unzeroed: no kernel thread writes the whole image.
        Some("noinit_itable"),
    )?;
    // The mount holds the device now; closing ours leaves autoclear to the unmount.
    drop(device);
    // An instance's /tmp starts empty, as on Lambda.
    std::fs::remove_dir(target.join("lost+found"))?;
    std::fs::set_permissions(target, std::os::unix::fs::PermissionsExt::from_mode(0o1777))
}

/// A `loop_config` backing a device with file `fd`.
fn loop_config(fd: std::os::fd::RawFd, flags: u32) -> io::Result<LoopConfig> {
    Ok(LoopConfig {
        fd: u32::try_from(fd).map_err(|_| io::Error::other("bad image descriptor"))?,
        block_size: 0,
        info: LoopInfo64 {
            device: 0,
            inode: 0,
            rdevice: 0,
            offset: 0,
            size_limit: 0,
            number: 0,
            encrypt_type: 0,
            encrypt_key_size: 0,
            flags,
            file_name: [0; 64],
            crypt_name: [0; 64],
            encrypt_key: [0; 32],
            init: [0; 2],
        },
        reserved: [0; 8],
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn images_leave_the_asked_size_usable_and_stay_sparse() {
        assert_eq!(std::mem::size_of::<LoopInfo64>(), 232, "as <linux/loop.h>");
        assert_eq!(std::mem::size_of::<LoopConfig>(), 304, "as <linux/loop.h>");
        assert_eq!(image_bytes(512), (512 + 16 + 6) << 20);
        let dir = tempfile::tempdir().expect("tmp");
        let Some(disks) = TmpDisks::detect(&dir.path().join("disks")) else {
            eprintln!("this host cannot loop-mount images (not root, or no mkfs.ext4)");
            return;
        };
        let disk = disks.make(512).expect("make");
        let again = disks.make(512).expect("make from the template");
        use std::os::unix::fs::MetadataExt;
        for image in [&disk.image, &again.image] {
            let meta = std::fs::metadata(image).expect("image");
            assert_eq!(meta.len(), image_bytes(512));
            assert!(
                meta.blocks() * 512 < 4 << 20,
                "sparse: {} blocks",
                meta.blocks()
            );
        }
        // The superblock and group descriptors sit in the first megabytes.
        let head = |p: &Path| {
            let mut head = vec![0u8; 4 << 20];
            std::os::unix::fs::FileExt::read_exact_at(
                &std::fs::File::open(p).expect("open"),
                &mut head,
                0,
            )
            .expect("read");
            head
        };
        assert!(
            head(&disk.image) == head(&again.image),
            "a copy is the template"
        );
        disk.remove();
        assert!(!disk.image.exists());
    }
}
