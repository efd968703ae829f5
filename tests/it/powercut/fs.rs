//! A FUSE passthrough file system that can forget everything not synced,
//! the way a power cut does (the kernel's page cache and a disk's write
//! cache both vanish; only what fsync reached the medium stays).
//!
//! Every write goes straight through to a backing directory, so a running
//! program sees an ordinary file system. What the medium would hold is kept
//! as an undo log instead:
//!
//! - **File data.** Before a write (or truncate) first touches a 4 KiB page
//!   that existed at the file's last fsync/fdatasync, the page's synced
//!   bytes are saved; the length at that sync is kept too. fsync or
//!   fdatasync of the file drops its log. [`Shared::power_cut`] writes the
//!   saved pages back and cuts the file to its synced length: all data
//!   written since the last sync is lost (nothing is kept by luck, no page
//!   is torn).
//! - **Names.** create, mkdir, unlink, rmdir and rename are logged in order;
//!   an unlinked file or removed directory moves to a graveyard so it can
//!   come back. fsync of a directory makes the log durable up to the last
//!   entry touching that directory, and everything before it, as a journaled
//!   file system commits in order. A file's own fsync does *not* make its
//!   name durable: POSIX asks for the directory's fsync, and that stricter
//!   rule is the one modelled (ext4 happens to be kinder). The power cut
//!   undoes the names that were not durable, newest first.
//!
//! Metadata other than size (mode, owner, times) is treated as durable at
//! once. Hard links, symlinks and device nodes are refused.
//!
//! The kernel keeps file pages cached per mount, so after a power cut the
//! file system must be unmounted and mounted afresh (see [`Mount`]); the
//! cut itself runs with nothing mounted.

use std::collections::{BTreeMap, HashMap};
use std::ffi::OsStr;
use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::fs::{DirBuilderExt, FileExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use fuser::{
    Errno, FileAttr, FileHandle, FileType, Filesystem, FopenFlags, Generation, INodeNo, LockOwner,
    OpenAccMode, OpenFlags, RenameFlags, ReplyAttr, ReplyCreate, ReplyData, ReplyDirectory,
    ReplyEmpty, ReplyEntry, ReplyOpen, ReplyWrite, Request, TimeOrNow, WriteFlags,
};

const PAGE: u64 = 4096;
/// Attributes and names may be cached this long: only this file system
/// changes the backing directory while it is mounted.
const TTL: Duration = Duration::from_secs(1);
const RENAME_NOREPLACE: u32 = 1;

/// What must be undone for one file's data: its length and the original
/// bytes of every page changed since its last sync.
struct DataUndo {
    file: File,
    synced_len: u64,
    pages: BTreeMap<u64, Vec<u8>>,
}

/// One change to the name space, and how to take it back.
enum NameOp {
    Created(PathBuf),
    MadeDir(PathBuf),
    /// Unlinked or removed: `path` now lives at `grave`.
    Buried {
        path: PathBuf,
        grave: PathBuf,
    },
    Renamed {
        from: PathBuf,
        to: PathBuf,
    },
}

struct Logged {
    op: NameOp,
    /// Directories (by inode) whose fsync makes this entry durable.
    dirs: Vec<u64>,
}

#[derive(Default)]
struct Counters {
    writes: u64,
    syncs: u64,
    dir_syncs: u64,
}

struct Inner {
    root: PathBuf,
    graveyard: PathBuf,
    graves: u64,
    paths: HashMap<u64, PathBuf>,
    inos: HashMap<PathBuf, u64>,
    next_ino: u64,
    handles: HashMap<u64, (File, u64)>,
    next_fh: u64,
    /// By the backing file's own inode number, which survives renames.
    data: HashMap<u64, DataUndo>,
    names: Vec<Logged>,
    counters: Counters,
}

/// The state shared between the mounted file system and the test.
#[derive(Clone)]
pub struct Shared(Arc<Mutex<Inner>>);

/// What one power cut threw away.
#[derive(Debug, Default)]
pub struct Dropped {
    pub files: usize,
    pub pages: usize,
    pub names: usize,
}

impl Shared {
    /// Serve `root`; the graveyard lives beside it, outside the mount.
    pub fn new(root: &Path) -> io::Result<Shared> {
        let root = root.canonicalize()?;
        let graveyard = root.with_extension("graveyard");
        fs::create_dir_all(&graveyard)?;
        let mut inner = Inner {
            root: root.clone(),
            graveyard,
            graves: 0,
            paths: HashMap::new(),
            inos: HashMap::new(),
            next_ino: 2,
            handles: HashMap::new(),
            next_fh: 1,
            data: HashMap::new(),
            names: Vec::new(),
            counters: Counters::default(),
        };
        inner.paths.insert(1, root.clone());
        inner.inos.insert(root, 1);
        Ok(Shared(Arc::new(Mutex::new(inner))))
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Forget everything not synced. Call with the file system unmounted.
    pub fn power_cut(&self) -> io::Result<Dropped> {
        let mut inner = self.lock();
        let mut dropped = Dropped::default();
        for (_, undo) in inner.data.drain() {
            dropped.files += 1;
            dropped.pages += undo.pages.len();
            undo.file.set_len(undo.synced_len)?;
            for (page, bytes) in &undo.pages {
                undo.file.write_all_at(bytes, page * PAGE)?;
            }
        }
        while let Some(entry) = inner.names.pop() {
            dropped.names += 1;
            match entry.op {
                NameOp::Created(p) => fs::remove_file(&p)?,
                NameOp::MadeDir(p) => fs::remove_dir(&p)?,
                NameOp::Buried { path, grave } => fs::rename(&grave, &path)?,
                NameOp::Renamed { from, to } => fs::rename(&to, &from)?,
            }
        }
        inner.handles.clear();
        let root = inner.root.clone();
        inner.paths.retain(|ino, _| *ino == 1);
        inner.inos.retain(|p, _| *p == root);
        Ok(dropped)
    }

    /// (writes, file syncs, directory syncs) seen so far.
    pub fn counters(&self) -> (u64, u64, u64) {
        let c = &self.lock().counters;
        (c.writes, c.syncs, c.dir_syncs)
    }
}

/// A mounted [`PowerCutFs`]; unmounts when dropped.
pub struct Mount {
    session: Option<fuser::BackgroundSession>,
}

impl Mount {
    pub fn new(shared: &Shared, mountpoint: &Path) -> io::Result<Mount> {
        let mut config = fuser::Config::default();
        config.mount_options = vec![
            fuser::MountOption::FSName("perch-powercut".into()),
            fuser::MountOption::DefaultPermissions,
        ];
        let fs = PowerCutFs(shared.clone());
        let session = fuser::spawn_mount(fs, mountpoint, &config)?;
        Ok(Mount {
            session: Some(session),
        })
    }

    /// Unmount and wait until every request the kernel still had is served.
    pub fn unmount(mut self) -> io::Result<()> {
        match self.session.take() {
            Some(s) => s.umount_and_join(),
            None => Ok(()),
        }
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        if let Some(s) = self.session.take() {
            let _ = s.umount_and_join();
        }
    }
}

pub struct PowerCutFs(Shared);

fn errno(e: io::Error) -> Errno {
    if e.raw_os_error().is_some() {
        Errno::from(e)
    } else {
        Errno::EIO
    }
}

fn kind(t: fs::FileType) -> FileType {
    FileType::from_std(t).unwrap_or(FileType::RegularFile)
}

fn time(secs: i64, nsecs: i64) -> SystemTime {
    if secs >= 0 {
        UNIX_EPOCH + Duration::new(secs as u64, nsecs as u32)
    } else {
        UNIX_EPOCH
    }
}

fn attr(ino: u64, m: &fs::Metadata) -> FileAttr {
    FileAttr {
        ino: INodeNo(ino),
        size: m.size(),
        blocks: m.blocks(),
        atime: time(m.atime(), m.atime_nsec()),
        mtime: time(m.mtime(), m.mtime_nsec()),
        ctime: time(m.ctime(), m.ctime_nsec()),
        crtime: UNIX_EPOCH,
        kind: kind(m.file_type()),
        perm: (m.mode() & 0o7777) as u16,
        nlink: m.nlink() as u32,
        uid: m.uid(),
        gid: m.gid(),
        rdev: m.rdev() as u32,
        blksize: 4096,
        flags: 0,
    }
}

impl Inner {
    fn path(&self, ino: INodeNo) -> Result<PathBuf, Errno> {
        self.paths.get(&ino.0).cloned().ok_or(Errno::ENOENT)
    }

    fn child(&self, parent: INodeNo, name: &OsStr) -> Result<PathBuf, Errno> {
        Ok(self.path(parent)?.join(name))
    }

    fn ino_for(&mut self, path: &Path) -> u64 {
        if let Some(i) = self.inos.get(path) {
            return *i;
        }
        let i = self.next_ino;
        self.next_ino += 1;
        self.inos.insert(path.to_owned(), i);
        self.paths.insert(i, path.to_owned());
        i
    }

    /// Everything at or under `from` is now at the same place under `to`.
    fn moved(&mut self, from: &Path, to: &Path) {
        let moving: Vec<(PathBuf, u64)> = self
            .inos
            .iter()
            .filter(|(p, _)| p.starts_with(from))
            .map(|(p, i)| (p.clone(), *i))
            .collect();
        for (p, i) in moving {
            self.inos.remove(&p);
            let rest = p.strip_prefix(from).unwrap_or(Path::new(""));
            let np = if rest.as_os_str().is_empty() {
                to.to_owned()
            } else {
                to.join(rest)
            };
            self.inos.insert(np.clone(), i);
            self.paths.insert(i, np);
        }
    }

    fn entry(&mut self, path: &Path) -> Result<FileAttr, Errno> {
        let m = fs::symlink_metadata(path).map_err(errno)?;
        let ino = self.ino_for(path);
        Ok(attr(ino, &m))
    }

    fn parent_ino(&self, parent: INodeNo) -> u64 {
        parent.0
    }

    fn log(&mut self, op: NameOp, dirs: Vec<u64>) {
        self.names.push(Logged { op, dirs });
    }

    /// Move `path` out of sight, keeping it for a power cut to bring back.
    fn bury(&mut self, path: &Path, parent: u64) -> Result<(), Errno> {
        self.graves += 1;
        let grave = self.graveyard.join(format!("{}", self.graves));
        fs::rename(path, &grave).map_err(errno)?;
        if let Some(i) = self.inos.remove(path) {
            // An open file stays reachable by its inode for fstat.
            self.paths.insert(i, grave.clone());
        }
        self.log(
            NameOp::Buried {
                path: path.to_owned(),
                grave,
            },
            vec![parent],
        );
        Ok(())
    }

    /// The synced state of this file's data, before its first change since
    /// the last sync.
    fn undo_for(&mut self, file: &File) -> io::Result<&mut DataUndo> {
        let m = file.metadata()?;
        let undo = match self.data.entry(m.ino()) {
            std::collections::hash_map::Entry::Occupied(e) => e.into_mut(),
            std::collections::hash_map::Entry::Vacant(e) => {
                let path = format!("/proc/self/fd/{}", std::os::fd::AsRawFd::as_raw_fd(file));
                let own = OpenOptions::new().read(true).write(true).open(path)?;
                e.insert(DataUndo {
                    file: own,
                    synced_len: m.size(),
                    pages: BTreeMap::new(),
                })
            }
        };
        Ok(undo)
    }

    /// Save the synced bytes of every page in `[from, to)` not saved yet.
    fn save_pages(&mut self, file: &File, from: u64, to: u64) -> io::Result<()> {
        let undo = self.undo_for(file)?;
        let end = to.min(undo.synced_len);
        if from >= end {
            return Ok(());
        }
        for page in from / PAGE..=(end - 1) / PAGE {
            if undo.pages.contains_key(&page) {
                continue;
            }
            let start = page * PAGE;
            let len = (undo.synced_len - start).min(PAGE) as usize;
            let mut buf = vec![0u8; len];
            undo.file.read_exact_at(&mut buf, start)?;
            undo.pages.insert(page, buf);
        }
        Ok(())
    }

    fn synced(&mut self, file: &File) -> io::Result<()> {
        let key = file.metadata()?.ino();
        self.data.remove(&key);
        self.counters.syncs += 1;
        Ok(())
    }

    /// A directory's fsync: every name change up to the last one touching
    /// it is on the medium now.
    fn dir_synced(&mut self, dir: u64) {
        self.counters.dir_syncs += 1;
        let Some(last) = self.names.iter().rposition(|l| l.dirs.contains(&dir)) else {
            return;
        };
        for entry in self.names.drain(..=last) {
            if let NameOp::Buried { grave, .. } = entry.op {
                let _ = if grave.is_dir() {
                    fs::remove_dir_all(&grave)
                } else {
                    fs::remove_file(&grave)
                };
            }
        }
    }

    fn truncate(&mut self, file: &File, size: u64) -> io::Result<()> {
        let len = file.metadata()?.size();
        if size < len {
            self.save_pages(file, size, len)?;
        } else {
            // Growing changes no synced byte, but the log must exist so the
            // cut restores the length.
            self.undo_for(file)?;
        }
        file.set_len(size)
    }
}

impl PowerCutFs {
    fn inner(&self) -> MutexGuard<'_, Inner> {
        self.0.lock()
    }
}

impl Filesystem for PowerCutFs {
    fn lookup(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        let mut inner = self.inner();
        match inner.child(parent, name).and_then(|p| inner.entry(&p)) {
            Ok(a) => reply.entry(&TTL, &a, Generation(0)),
            Err(e) => reply.error(e),
        }
    }

    fn getattr(&self, _req: &Request, ino: INodeNo, fh: Option<FileHandle>, reply: ReplyAttr) {
        let inner = self.inner();
        let meta = match fh.and_then(|h| inner.handles.get(&h.0)) {
            Some((f, _)) => f.metadata().map_err(errno),
            None => inner
                .path(ino)
                .and_then(|p| fs::symlink_metadata(p).map_err(errno)),
        };
        match meta {
            Ok(m) => reply.attr(&TTL, &attr(ino.0, &m)),
            Err(e) => reply.error(e),
        }
    }

    fn setattr(
        &self,
        _req: &Request,
        ino: INodeNo,
        mode: Option<u32>,
        _uid: Option<u32>,
        _gid: Option<u32>,
        size: Option<u64>,
        atime: Option<TimeOrNow>,
        mtime: Option<TimeOrNow>,
        _ctime: Option<SystemTime>,
        fh: Option<FileHandle>,
        _crtime: Option<SystemTime>,
        _chgtime: Option<SystemTime>,
        _bkuptime: Option<SystemTime>,
        _flags: Option<fuser::BsdFileFlags>,
        reply: ReplyAttr,
    ) {
        let mut inner = self.inner();
        let result = (|| -> Result<FileAttr, Errno> {
            let path = inner.path(ino)?;
            if let Some(m) = mode {
                fs::set_permissions(&path, fs::Permissions::from_mode(m & 0o7777))
                    .map_err(errno)?;
            }
            if size.is_some() || atime.is_some() || mtime.is_some() {
                let file = match fh.and_then(|h| inner.handles.get(&h.0)) {
                    Some((f, _)) => f.try_clone().map_err(errno)?,
                    None => OpenOptions::new().write(true).open(&path).map_err(errno)?,
                };
                if let Some(s) = size {
                    inner.truncate(&file, s).map_err(errno)?;
                }
                let to_time = |t: TimeOrNow| match t {
                    TimeOrNow::SpecificTime(t) => t,
                    TimeOrNow::Now => SystemTime::now(),
                };
                let mut times = fs::FileTimes::new();
                if let Some(t) = atime {
                    times = times.set_accessed(to_time(t));
                }
                if let Some(t) = mtime {
                    times = times.set_modified(to_time(t));
                }
                file.set_times(times).map_err(errno)?;
            }
            let m = fs::symlink_metadata(&path).map_err(errno)?;
            Ok(attr(ino.0, &m))
        })();
        match result {
            Ok(a) => reply.attr(&TTL, &a),
            Err(e) => reply.error(e),
        }
    }

    fn mkdir(
        &self,
        _req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        umask: u32,
        reply: ReplyEntry,
    ) {
        let mut inner = self.inner();
        let result = (|| {
            let path = inner.child(parent, name)?;
            fs::DirBuilder::new()
                .mode(mode & !umask & 0o7777)
                .create(&path)
                .map_err(errno)?;
            let p = inner.parent_ino(parent);
            inner.log(NameOp::MadeDir(path.clone()), vec![p]);
            inner.entry(&path)
        })();
        match result {
            Ok(a) => reply.entry(&TTL, &a, Generation(0)),
            Err(e) => reply.error(e),
        }
    }

    fn unlink(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        let mut inner = self.inner();
        let result = (|| {
            let path = inner.child(parent, name)?;
            let m = fs::symlink_metadata(&path).map_err(errno)?;
            if m.is_dir() {
                return Err(Errno::EISDIR);
            }
            inner.bury(&path, parent.0)
        })();
        match result {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(e),
        }
    }

    fn rmdir(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        let mut inner = self.inner();
        let result = (|| {
            let path = inner.child(parent, name)?;
            let mut it = fs::read_dir(&path).map_err(errno)?;
            if it.next().is_some() {
                return Err(Errno::ENOTEMPTY);
            }
            inner.bury(&path, parent.0)
        })();
        match result {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(e),
        }
    }

    fn rename(
        &self,
        _req: &Request,
        parent: INodeNo,
        name: &OsStr,
        newparent: INodeNo,
        newname: &OsStr,
        flags: RenameFlags,
        reply: ReplyEmpty,
    ) {
        let mut inner = self.inner();
        let result = (|| {
            if flags.bits() & !RENAME_NOREPLACE != 0 {
                return Err(Errno::EINVAL);
            }
            let from = inner.child(parent, name)?;
            let to = inner.child(newparent, newname)?;
            let src = fs::symlink_metadata(&from).map_err(errno)?;
            match fs::symlink_metadata(&to) {
                Ok(_) if flags.bits() & RENAME_NOREPLACE != 0 => return Err(Errno::EEXIST),
                Ok(dst) => {
                    if dst.is_dir() != src.is_dir() {
                        return Err(if dst.is_dir() {
                            Errno::EISDIR
                        } else {
                            Errno::ENOTDIR
                        });
                    }
                    if dst.is_dir() && fs::read_dir(&to).map_err(errno)?.next().is_some() {
                        return Err(Errno::ENOTEMPTY);
                    }
                    inner.bury(&to, newparent.0)?;
                }
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(errno(e)),
            }
            fs::rename(&from, &to).map_err(errno)?;
            inner.moved(&from, &to);
            inner.log(
                NameOp::Renamed {
                    from: from.clone(),
                    to: to.clone(),
                },
                vec![parent.0, newparent.0],
            );
            Ok(())
        })();
        match result {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(e),
        }
    }

    fn open(&self, _req: &Request, ino: INodeNo, flags: OpenFlags, reply: ReplyOpen) {
        let mut inner = self.inner();
        let result = (|| {
            let path = inner.path(ino)?;
            let mut opts = OpenOptions::new();
            match flags.acc_mode() {
                OpenAccMode::O_RDONLY => opts.read(true),
                _ => opts.read(true).write(true),
            };
            let file = opts.open(&path).map_err(errno)?;
            let fh = inner.next_fh;
            inner.next_fh += 1;
            inner.handles.insert(fh, (file, ino.0));
            Ok(fh)
        })();
        match result {
            Ok(fh) => reply.opened(FileHandle(fh), FopenFlags::empty()),
            Err(e) => reply.error(e),
        }
    }

    fn create(
        &self,
        _req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        umask: u32,
        flags: i32,
        reply: ReplyCreate,
    ) {
        const O_EXCL: i32 = 0o200;
        let mut inner = self.inner();
        let result = (|| {
            let path = inner.child(parent, name)?;
            let existed = path.exists();
            let mut opts = OpenOptions::new();
            opts.read(true).write(true).mode(mode & !umask & 0o7777);
            if flags & O_EXCL != 0 {
                opts.create_new(true);
            } else {
                opts.create(true);
            }
            let file = opts.open(&path).map_err(errno)?;
            if !existed {
                inner.log(NameOp::Created(path.clone()), vec![parent.0]);
            }
            let a = inner.entry(&path)?;
            let fh = inner.next_fh;
            inner.next_fh += 1;
            inner.handles.insert(fh, (file, a.ino.0));
            Ok((a, fh))
        })();
        match result {
            Ok((a, fh)) => {
                reply.created(&TTL, &a, Generation(0), FileHandle(fh), FopenFlags::empty())
            }
            Err(e) => reply.error(e),
        }
    }

    fn read(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        size: u32,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyData,
    ) {
        let inner = self.inner();
        let Some((file, _)) = inner.handles.get(&fh.0) else {
            return reply.error(Errno::EBADF);
        };
        let mut buf = vec![0u8; size as usize];
        let mut got = 0;
        while got < buf.len() {
            match file.read_at(&mut buf[got..], offset + got as u64) {
                Ok(0) => break,
                Ok(n) => got += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return reply.error(errno(e)),
            }
        }
        reply.data(&buf[..got]);
    }

    fn write(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        data: &[u8],
        _write_flags: WriteFlags,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyWrite,
    ) {
        let mut inner = self.inner();
        let result = (|| {
            let file = match inner.handles.get(&fh.0) {
                Some((f, _)) => f.try_clone()?,
                None => return Err(io::Error::from_raw_os_error(9)),
            };
            inner.save_pages(&file, offset, offset + data.len() as u64)?;
            file.write_all_at(data, offset)?;
            inner.counters.writes += 1;
            Ok(())
        })();
        match result {
            Ok(()) => reply.written(data.len() as u32),
            Err(e) => reply.error(errno(e)),
        }
    }

    fn flush(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _lock_owner: LockOwner,
        reply: ReplyEmpty,
    ) {
        reply.ok();
    }

    fn release(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        _flush: bool,
        reply: ReplyEmpty,
    ) {
        self.inner().handles.remove(&fh.0);
        reply.ok();
    }

    fn fsync(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        _datasync: bool,
        reply: ReplyEmpty,
    ) {
        let mut inner = self.inner();
        let file = match inner.handles.get(&fh.0) {
            Some((f, _)) => f.try_clone(),
            None => return reply.error(Errno::EBADF),
        };
        match file.and_then(|f| inner.synced(&f)) {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(errno(e)),
        }
    }

    fn readdir(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        mut reply: ReplyDirectory,
    ) {
        let mut inner = self.inner();
        let path = match inner.path(ino) {
            Ok(p) => p,
            Err(e) => return reply.error(e),
        };
        let mut entries: Vec<(u64, FileType, std::ffi::OsString)> = vec![
            (ino.0, FileType::Directory, ".".into()),
            (ino.0, FileType::Directory, "..".into()),
        ];
        let list = match fs::read_dir(&path) {
            Ok(l) => l,
            Err(e) => return reply.error(errno(e)),
        };
        let mut names: Vec<(std::ffi::OsString, FileType)> = list
            .filter_map(Result::ok)
            .map(|e| {
                let t = e.file_type().map(kind).unwrap_or(FileType::RegularFile);
                (e.file_name(), t)
            })
            .collect();
        names.sort_by(|a, b| a.0.cmp(&b.0));
        for (name, t) in names {
            let i = inner.ino_for(&path.join(&name));
            entries.push((i, t, name));
        }
        for (i, (child, t, name)) in entries.into_iter().enumerate().skip(offset as usize) {
            if reply.add(INodeNo(child), (i + 1) as u64, t, name) {
                break;
            }
        }
        reply.ok();
    }

    fn fsyncdir(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        _datasync: bool,
        reply: ReplyEmpty,
    ) {
        self.inner().dir_synced(ino.0);
        reply.ok();
    }

    fn access(&self, _req: &Request, _ino: INodeNo, _mask: fuser::AccessFlags, reply: ReplyEmpty) {
        reply.ok();
    }
}
