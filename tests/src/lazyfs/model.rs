//! The file system itself, in memory and free of FUSE: every file's bytes now and as of its
//! last fsync, every directory's entries now and as of its last fsync, and
//! [`Model::power_loss`], which throws the difference away. The FUSE shell
//! ([`super::fuse`]) only translates requests; everything about durability is decided (and
//! unit-tested) here.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::ffi::{OsStr, OsString};
use std::fs;
use std::io;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::time::SystemTime;

use nix::errno::Errno;

/// An inode number. Numbers are never reused, so a number the kernel still remembers after
/// a power loss names nothing rather than some other file.
pub type Ino = u64;

/// The root directory's inode number (FUSE's).
pub const ROOT: Ino = 1;

/// What an inode is. Symbolic links, devices, FIFOs and sockets are not supported.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// A regular file.
    File,
    /// A directory.
    Dir,
}

/// What `stat` shows of an inode.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Attr {
    /// Inode number.
    pub ino: Ino,
    /// File or directory.
    pub kind: Kind,
    /// Bytes (files: current length; directories: number of entries).
    pub size: u64,
    /// Permission bits.
    pub perm: u16,
    /// Names in the current namespace (directories: 2 + subdirectories).
    pub nlink: u32,
    /// Owner.
    pub uid: u32,
    /// Group.
    pub gid: u32,
    /// Last access (as set; reads do not update it).
    pub atime: SystemTime,
    /// Last modification.
    pub mtime: SystemTime,
    /// Last change.
    pub ctime: SystemTime,
}

/// One directory entry: the inode it names, its kind, the name.
pub type Entry = (Ino, Kind, OsString);

/// Who creates a file.
#[derive(Clone, Copy, Debug)]
pub struct Owner {
    /// User id.
    pub uid: u32,
    /// Group id.
    pub gid: u32,
}

/// What a [`Model::power_loss`] threw away.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PowerLoss {
    /// Files whose unsynced writes or length changes were dropped.
    pub files_rolled_back: u64,
    /// Bytes in the dropped ranges (an upper bound of what changed).
    pub bytes_rolled_back: u64,
    /// Directories whose unsynced creations, renames or removals were dropped.
    pub dirs_rolled_back: u64,
    /// Inodes that no durable name reached any more (created and never made durable).
    pub inodes_lost: u64,
    /// Durable entries dropped because their directory was durably named twice (a
    /// directory renamed with only one of its two parents synced).
    pub duplicate_dirs_dropped: u64,
}

/// How much the file system holds.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Usage {
    /// Regular files.
    pub files: u64,
    /// Directories.
    pub dirs: u64,
    /// Bytes held in memory: current and durable copies of every file.
    pub bytes: u64,
    /// Files with writes not yet fsynced.
    pub unsynced_files: u64,
    /// Directories with entry changes not yet fsynced.
    pub unsynced_dirs: u64,
    /// Open file and directory handles.
    pub open_handles: u64,
}

struct Meta {
    perm: u16,
    uid: u32,
    gid: u32,
    atime: SystemTime,
    mtime: SystemTime,
    ctime: SystemTime,
}

struct FileBody {
    /// What reads see.
    data: Vec<u8>,
    /// What survives a power loss: the bytes as of the last fsync (empty for a new file).
    durable: Vec<u8>,
    /// `[lo, hi)`: the only bytes of `data` that may differ from `durable`, and the length
    /// may differ too; `None`: `data == durable`.
    dirty: Option<(usize, usize)>,
}

struct DirBody {
    entries: BTreeMap<OsString, Ino>,
    /// The entries as of the last fsync of this directory.
    durable: BTreeMap<OsString, Ino>,
    /// The directory this one is named in now (itself for the root).
    parent: Ino,
}

enum Body {
    File(FileBody),
    Dir(DirBody),
}

struct Inode {
    meta: Meta,
    body: Body,
    /// Names in the current namespace.
    names: u32,
    /// Names in the durable entries of existing directories.
    durable_names: u32,
    /// Open handles.
    open: u32,
}

impl Inode {
    fn kind(&self) -> Kind {
        match self.body {
            Body::File(_) => Kind::File,
            Body::Dir(_) => Kind::Dir,
        }
    }

    fn bytes(&self) -> u64 {
        match &self.body {
            Body::File(f) => (f.data.len() + f.durable.len()) as u64,
            Body::Dir(_) => 0,
        }
    }
}

/// The whole file system. See the module documentation of [`super`] for the durability
/// model.
pub struct Model {
    inodes: HashMap<Ino, Inode>,
    next_ino: Ino,
    /// Open handles: handle → inode.
    handles: HashMap<u64, Ino>,
    next_handle: u64,
    /// Sum of [`Inode::bytes`].
    bytes: u64,
    max_bytes: u64,
}

fn meta(perm: u16, owner: Owner) -> Meta {
    let now = SystemTime::now();
    Meta {
        perm,
        uid: owner.uid,
        gid: owner.gid,
        atime: now,
        mtime: now,
        ctime: now,
    }
}

fn add_span(dirty: &mut Option<(usize, usize)>, lo: usize, hi: usize) {
    *dirty = Some(match *dirty {
        None => (lo, hi),
        Some((a, b)) => (a.min(lo), b.max(hi)),
    });
}

impl Model {
    /// An empty file system (a root directory owned by `owner`) that holds at most
    /// `max_bytes` of file contents, counting current and durable copies.
    pub fn new(max_bytes: u64, owner: Owner) -> Self {
        let root = Inode {
            meta: meta(0o755, owner),
            body: Body::Dir(DirBody {
                entries: BTreeMap::new(),
                durable: BTreeMap::new(),
                parent: ROOT,
            }),
            names: 1,
            durable_names: 1,
            open: 0,
        };
        Self {
            inodes: HashMap::from([(ROOT, root)]),
            next_ino: ROOT + 1,
            handles: HashMap::new(),
            next_handle: 1,
            bytes: 0,
            max_bytes,
        }
    }

    fn inode(&self, ino: Ino) -> Result<&Inode, Errno> {
        self.inodes.get(&ino).ok_or(Errno::ESTALE)
    }

    fn inode_mut(&mut self, ino: Ino) -> Result<&mut Inode, Errno> {
        self.inodes.get_mut(&ino).ok_or(Errno::ESTALE)
    }

    fn dir(&self, ino: Ino) -> Result<&DirBody, Errno> {
        match &self.inode(ino)?.body {
            Body::Dir(d) => Ok(d),
            Body::File(_) => Err(Errno::ENOTDIR),
        }
    }

    fn dir_mut(&mut self, ino: Ino) -> Result<&mut DirBody, Errno> {
        match &mut self.inode_mut(ino)?.body {
            Body::Dir(d) => Ok(d),
            Body::File(_) => Err(Errno::ENOTDIR),
        }
    }

    fn file_mut(&mut self, ino: Ino) -> Result<&mut FileBody, Errno> {
        match &mut self.inode_mut(ino)?.body {
            Body::File(f) => Ok(f),
            Body::Dir(_) => Err(Errno::EISDIR),
        }
    }

    /// `stat`.
    pub fn attr(&self, ino: Ino) -> Result<Attr, Errno> {
        let inode = self.inode(ino)?;
        let (size, nlink) = match &inode.body {
            Body::File(f) => (f.data.len() as u64, inode.names),
            Body::Dir(d) => {
                let subdirs = d
                    .entries
                    .values()
                    .filter(|i| self.inodes.get(i).is_some_and(|c| c.kind() == Kind::Dir))
                    .count() as u32;
                let nlink = if inode.names > 0 { 2 + subdirs } else { 0 };
                (d.entries.len() as u64, nlink)
            }
        };
        let m = &inode.meta;
        Ok(Attr {
            ino,
            kind: inode.kind(),
            size,
            perm: m.perm,
            nlink,
            uid: m.uid,
            gid: m.gid,
            atime: m.atime,
            mtime: m.mtime,
            ctime: m.ctime,
        })
    }

    /// The inode `name` in directory `parent` names now.
    pub fn lookup(&self, parent: Ino, name: &OsStr) -> Result<Attr, Errno> {
        let ino = *self.dir(parent)?.entries.get(name).ok_or(Errno::ENOENT)?;
        self.attr(ino)
    }

    fn add_inode(
        &mut self,
        parent: Ino,
        name: &OsStr,
        perm: u16,
        owner: Owner,
        kind: Kind,
    ) -> Result<Attr, Errno> {
        if self.dir(parent)?.entries.contains_key(name) {
            return Err(Errno::EEXIST);
        }
        let ino = self.next_ino;
        self.next_ino += 1;
        let body = match kind {
            Kind::File => Body::File(FileBody {
                data: Vec::new(),
                durable: Vec::new(),
                dirty: None,
            }),
            Kind::Dir => Body::Dir(DirBody {
                entries: BTreeMap::new(),
                durable: BTreeMap::new(),
                parent,
            }),
        };
        let inode = Inode {
            meta: meta(perm & 0o7777, owner),
            body,
            names: 1,
            durable_names: 0,
            open: 0,
        };
        self.inodes.insert(ino, inode);
        self.dir_mut(parent)?.entries.insert(name.to_owned(), ino);
        self.touch(parent);
        self.attr(ino)
    }

    /// Creates an empty regular file (`EEXIST` if the name is taken). Its name is durable
    /// only once `parent` is fsynced.
    pub fn create_file(
        &mut self,
        parent: Ino,
        name: &OsStr,
        perm: u16,
        owner: Owner,
    ) -> Result<Attr, Errno> {
        self.add_inode(parent, name, perm, owner, Kind::File)
    }

    /// Creates an empty directory.
    pub fn mkdir(
        &mut self,
        parent: Ino,
        name: &OsStr,
        perm: u16,
        owner: Owner,
    ) -> Result<Attr, Errno> {
        self.add_inode(parent, name, perm, owner, Kind::Dir)
    }

    fn touch(&mut self, ino: Ino) {
        if let Some(inode) = self.inodes.get_mut(&ino) {
            let now = SystemTime::now();
            inode.meta.mtime = now;
            inode.meta.ctime = now;
        }
    }

    /// One name of `ino` is gone from the current namespace.
    fn drop_name(&mut self, ino: Ino) {
        if let Some(inode) = self.inodes.get_mut(&ino) {
            inode.names = inode.names.saturating_sub(1);
            inode.meta.ctime = SystemTime::now();
        }
        self.collect(ino);
    }

    /// Frees `ino` (and what only it kept alive) if nothing can reach it any more: no
    /// current name, no durable name, no open handle.
    fn collect(&mut self, ino: Ino) {
        let mut work = vec![ino];
        while let Some(ino) = work.pop() {
            let Some(inode) = self.inodes.get(&ino) else {
                continue;
            };
            if ino == ROOT || inode.names > 0 || inode.durable_names > 0 || inode.open > 0 {
                continue;
            }
            let inode = self.inodes.remove(&ino).expect("just seen");
            self.bytes -= inode.bytes();
            if let Body::Dir(d) = inode.body {
                for child in d.durable.values() {
                    if let Some(c) = self.inodes.get_mut(child) {
                        c.durable_names = c.durable_names.saturating_sub(1);
                        work.push(*child);
                    }
                }
            }
        }
    }

    /// Removes a file's name (`EISDIR` for a directory).
    pub fn unlink(&mut self, parent: Ino, name: &OsStr) -> Result<(), Errno> {
        let ino = *self.dir(parent)?.entries.get(name).ok_or(Errno::ENOENT)?;
        if self.inode(ino)?.kind() == Kind::Dir {
            return Err(Errno::EISDIR);
        }
        self.dir_mut(parent)?.entries.remove(name);
        self.touch(parent);
        self.drop_name(ino);
        Ok(())
    }

    /// Removes an empty directory.
    pub fn rmdir(&mut self, parent: Ino, name: &OsStr) -> Result<(), Errno> {
        let ino = *self.dir(parent)?.entries.get(name).ok_or(Errno::ENOENT)?;
        if !self.dir(ino)?.entries.is_empty() {
            return Err(Errno::ENOTEMPTY);
        }
        self.dir_mut(parent)?.entries.remove(name);
        self.touch(parent);
        self.drop_name(ino);
        Ok(())
    }

    /// Whether `ino` is `ancestor` or below it (current namespace).
    fn is_within(&self, mut ino: Ino, ancestor: Ino) -> bool {
        loop {
            if ino == ancestor {
                return true;
            }
            match self.dir(ino) {
                Ok(d) if ino != ROOT => ino = d.parent,
                _ => return false,
            }
        }
    }

    /// `renameat2`: moves a name, replacing the target unless `noreplace` (`EEXIST`), or
    /// swaps two names with `exchange`. Durable only once both directories are fsynced,
    /// each for its own half.
    pub fn rename(
        &mut self,
        parent: Ino,
        name: &OsStr,
        new_parent: Ino,
        new_name: &OsStr,
        noreplace: bool,
        exchange: bool,
    ) -> Result<(), Errno> {
        let src = *self.dir(parent)?.entries.get(name).ok_or(Errno::ENOENT)?;
        let target = self.dir(new_parent)?.entries.get(new_name).copied();
        let src_kind = self.inode(src)?.kind();
        if src_kind == Kind::Dir && self.is_within(new_parent, src) {
            return Err(Errno::EINVAL);
        }
        if exchange {
            let target = target.ok_or(Errno::ENOENT)?;
            if self.inode(target)?.kind() == Kind::Dir && self.is_within(parent, target) {
                return Err(Errno::EINVAL);
            }
            self.dir_mut(parent)?
                .entries
                .insert(name.to_owned(), target);
            self.dir_mut(new_parent)?
                .entries
                .insert(new_name.to_owned(), src);
            if let Ok(d) = self.dir_mut(src) {
                d.parent = new_parent;
            }
            if let Ok(d) = self.dir_mut(target) {
                d.parent = parent;
            }
            self.touch(parent);
            self.touch(new_parent);
            return Ok(());
        }
        if let Some(target) = target {
            if noreplace {
                return Err(Errno::EEXIST);
            }
            if target == src {
                return Ok(()); // two names of one file: POSIX says do nothing
            }
            match (src_kind, self.inode(target)?.kind()) {
                (Kind::File, Kind::Dir) => return Err(Errno::EISDIR),
                (Kind::Dir, Kind::File) => return Err(Errno::ENOTDIR),
                (Kind::Dir, Kind::Dir) if !self.dir(target)?.entries.is_empty() => {
                    return Err(Errno::ENOTEMPTY);
                }
                _ => {}
            }
        }
        self.dir_mut(parent)?.entries.remove(name);
        self.dir_mut(new_parent)?
            .entries
            .insert(new_name.to_owned(), src);
        if let Ok(d) = self.dir_mut(src) {
            d.parent = new_parent;
        }
        self.touch(parent);
        self.touch(new_parent);
        if let Some(target) = target {
            self.drop_name(target);
        }
        Ok(())
    }

    /// A second name for a file (`EPERM` for a directory).
    pub fn link(&mut self, ino: Ino, new_parent: Ino, new_name: &OsStr) -> Result<Attr, Errno> {
        if self.inode(ino)?.kind() == Kind::Dir {
            return Err(Errno::EPERM);
        }
        if self.dir(new_parent)?.entries.contains_key(new_name) {
            return Err(Errno::EEXIST);
        }
        self.dir_mut(new_parent)?
            .entries
            .insert(new_name.to_owned(), ino);
        self.inode_mut(ino)?.names += 1;
        self.touch(new_parent);
        self.attr(ino)
    }

    /// Opens a file or directory; returns the handle.
    pub fn open(&mut self, ino: Ino) -> Result<u64, Errno> {
        self.inode_mut(ino)?.open += 1;
        let fh = self.next_handle;
        self.next_handle += 1;
        self.handles.insert(fh, ino);
        Ok(fh)
    }

    /// Closes a handle (unknown handles, e.g. from before a power loss, are ignored).
    pub fn release(&mut self, fh: u64) {
        if let Some(ino) = self.handles.remove(&fh) {
            if let Some(inode) = self.inodes.get_mut(&ino) {
                inode.open = inode.open.saturating_sub(1);
            }
            self.collect(ino);
        }
    }

    /// Open handles (the kernel releases a killed process's files shortly after it dies).
    pub fn open_handles(&self) -> usize {
        self.handles.len()
    }

    /// Up to `size` bytes from `offset` (fewer at the end of the file).
    pub fn read(&self, ino: Ino, offset: u64, size: u32) -> Result<&[u8], Errno> {
        match &self.inode(ino)?.body {
            Body::File(f) => {
                let len = f.data.len();
                let lo = usize::try_from(offset).unwrap_or(usize::MAX).min(len);
                let hi = lo.saturating_add(size as usize).min(len);
                Ok(&f.data[lo..hi])
            }
            Body::Dir(_) => Err(Errno::EISDIR),
        }
    }

    fn check_room(&self, grow: usize) -> Result<(), Errno> {
        if self.bytes.saturating_add(grow as u64) > self.max_bytes {
            Err(Errno::ENOSPC)
        } else {
            Ok(())
        }
    }

    /// `pwrite`: visible at once, durable at the next fsync of this file.
    pub fn write(&mut self, ino: Ino, offset: u64, bytes: &[u8]) -> Result<u32, Errno> {
        let lo = usize::try_from(offset).map_err(|_| Errno::EFBIG)?;
        let hi = lo.checked_add(bytes.len()).ok_or(Errno::EFBIG)?;
        let old_len = match &self.inode(ino)?.body {
            Body::File(f) => f.data.len(),
            Body::Dir(_) => return Err(Errno::EISDIR),
        };
        self.check_room(hi.saturating_sub(old_len))?;
        let f = self.file_mut(ino)?;
        if hi > old_len {
            f.data.resize(hi, 0);
        }
        f.data[lo..hi].copy_from_slice(bytes);
        add_span(&mut f.dirty, lo.min(old_len), hi);
        self.bytes += hi.saturating_sub(old_len) as u64;
        self.touch(ino);
        Ok(bytes.len() as u32)
    }

    /// `ftruncate`: a change of length is data like any other, durable at the next fsync.
    pub fn set_len(&mut self, ino: Ino, len: u64) -> Result<(), Errno> {
        let len = usize::try_from(len).map_err(|_| Errno::EFBIG)?;
        let old_len = match &self.inode(ino)?.body {
            Body::File(f) => f.data.len(),
            Body::Dir(_) => return Err(Errno::EISDIR),
        };
        if len == old_len {
            return Ok(());
        }
        self.check_room(len.saturating_sub(old_len))?;
        let f = self.file_mut(ino)?;
        f.data.resize(len, 0);
        add_span(&mut f.dirty, len.min(old_len), len.max(old_len));
        self.bytes = self.bytes + len as u64 - old_len as u64;
        self.touch(ino);
        Ok(())
    }

    /// `chmod`, `chown`, `utimes`: metadata is not modelled, it changes at once and for
    /// good.
    pub fn set_meta(
        &mut self,
        ino: Ino,
        perm: Option<u16>,
        uid: Option<u32>,
        gid: Option<u32>,
        atime: Option<SystemTime>,
        mtime: Option<SystemTime>,
    ) -> Result<(), Errno> {
        let m = &mut self.inode_mut(ino)?.meta;
        if let Some(p) = perm {
            m.perm = p & 0o7777;
        }
        if let Some(u) = uid {
            m.uid = u;
        }
        if let Some(g) = gid {
            m.gid = g;
        }
        if let Some(t) = atime {
            m.atime = t;
        }
        if let Some(t) = mtime {
            m.mtime = t;
        }
        m.ctime = SystemTime::now();
        Ok(())
    }

    /// `fsync`/`fdatasync` of a file (its bytes and length become durable) or of a
    /// directory (its current entries become durable; the inodes they name survive a power
    /// loss with whatever their own last fsync left in them).
    pub fn fsync(&mut self, ino: Ino) -> Result<(), Errno> {
        match &mut self.inode_mut(ino)?.body {
            Body::File(f) => {
                let Some((lo, hi)) = f.dirty.take() else {
                    return Ok(());
                };
                let (old, len) = (f.durable.len(), f.data.len());
                f.durable.resize(len, 0);
                let hi = hi.min(len);
                if lo < hi {
                    f.durable[lo..hi].copy_from_slice(&f.data[lo..hi]);
                }
                self.bytes = self.bytes + len as u64 - old as u64;
                Ok(())
            }
            Body::Dir(d) => {
                if d.durable == d.entries {
                    return Ok(());
                }
                let old = std::mem::replace(&mut d.durable, d.entries.clone());
                let new: Vec<Ino> = d.entries.values().copied().collect();
                for child in &new {
                    if let Some(c) = self.inodes.get_mut(child) {
                        c.durable_names += 1;
                    }
                }
                for child in old.values() {
                    if let Some(c) = self.inodes.get_mut(child) {
                        c.durable_names = c.durable_names.saturating_sub(1);
                    }
                    self.collect(*child);
                }
                Ok(())
            }
        }
    }

    /// A directory's entries, without `.` and `..`, and its parent.
    pub fn readdir(&self, ino: Ino) -> Result<(Ino, Vec<Entry>), Errno> {
        let d = self.dir(ino)?;
        let list = d
            .entries
            .iter()
            .filter_map(|(name, child)| {
                let kind = self.inodes.get(child)?.kind();
                Some((*child, kind, name.clone()))
            })
            .collect();
        Ok((d.parent, list))
    }

    /// Counts.
    pub fn usage(&self) -> Usage {
        let mut u = Usage {
            bytes: self.bytes,
            open_handles: self.handles.len() as u64,
            ..Usage::default()
        };
        for inode in self.inodes.values() {
            match &inode.body {
                Body::File(f) => {
                    u.files += 1;
                    u.unsynced_files += u64::from(f.dirty.is_some());
                }
                Body::Dir(d) => {
                    u.dirs += 1;
                    u.unsynced_dirs += u64::from(d.entries != d.durable);
                }
            }
        }
        u
    }

    /// The power goes out: every file goes back to its bytes and length at its last fsync,
    /// every directory to its entries at its last fsync, inodes no durable name reaches
    /// are gone, and every handle is forgotten.
    pub fn power_loss(&mut self) -> PowerLoss {
        let mut report = PowerLoss::default();
        for inode in self.inodes.values_mut() {
            match &mut inode.body {
                Body::File(f) => {
                    if let Some((lo, hi)) = f.dirty.take() {
                        report.files_rolled_back += 1;
                        report.bytes_rolled_back += hi.saturating_sub(lo) as u64;
                        f.data.clone_from(&f.durable);
                    }
                }
                Body::Dir(d) => {
                    if d.entries != d.durable {
                        report.dirs_rolled_back += 1;
                        d.entries.clone_from(&d.durable);
                    }
                }
            }
            inode.names = 0;
            inode.durable_names = 0;
            inode.open = 0;
        }
        self.handles.clear();
        // What a durable name still reaches, from the root; a directory reached twice
        // keeps its first name only (in name order, breadth first).
        let mut seen = std::collections::HashSet::from([ROOT]);
        let mut queue = VecDeque::from([ROOT]);
        while let Some(dir) = queue.pop_front() {
            let entries: Vec<(OsString, Ino)> = match self.dir(dir) {
                Ok(d) => d.entries.iter().map(|(n, i)| (n.clone(), *i)).collect(),
                Err(_) => continue,
            };
            for (name, child) in entries {
                let kind = self.inodes.get(&child).map(Inode::kind);
                let drop_it = match kind {
                    None => true,
                    Some(Kind::Dir) => !seen.insert(child),
                    Some(Kind::File) => {
                        seen.insert(child);
                        false
                    }
                };
                if drop_it {
                    report.duplicate_dirs_dropped += u64::from(kind.is_some());
                    let d = self.dir_mut(dir).expect("a directory");
                    d.entries.remove(&name);
                    d.durable.remove(&name);
                    continue;
                }
                let c = self.inodes.get_mut(&child).expect("present");
                c.names += 1;
                c.durable_names += 1;
                if let Body::Dir(d) = &mut c.body {
                    d.parent = dir;
                    queue.push_back(child);
                }
            }
        }
        let before = self.inodes.len();
        self.inodes.retain(|ino, _| seen.contains(ino));
        report.inodes_lost = (before - self.inodes.len()) as u64;
        let root = self.inodes.get_mut(&ROOT).expect("the root stays");
        root.names = 1;
        root.durable_names = 1;
        self.bytes = self.inodes.values().map(Inode::bytes).sum();
        report
    }

    /// Makes everything durable, as a clean unmount does.
    pub fn sync_all(&mut self) {
        let inos: Vec<Ino> = self.inodes.keys().copied().collect();
        for ino in inos {
            let _ = self.fsync(ino);
        }
    }

    /// Takes `dir`'s tree in as the durable state (regular files and directories only).
    pub fn import(&mut self, dir: &Path) -> io::Result<()> {
        self.import_into(ROOT, dir)
    }

    fn import_into(&mut self, parent: Ino, dir: &Path) -> io::Result<()> {
        let mut entries: Vec<fs::DirEntry> = fs::read_dir(dir)?.collect::<Result<_, _>>()?;
        entries.sort_by_key(fs::DirEntry::file_name);
        for entry in entries {
            let path = entry.path();
            let md = fs::symlink_metadata(&path)?;
            let owner = Owner {
                uid: md.uid(),
                gid: md.gid(),
            };
            let perm = (md.permissions().mode() & 0o7777) as u16;
            let name = entry.file_name();
            let to_io = |e: Errno| io::Error::from_raw_os_error(e as i32);
            let attr = if md.is_dir() {
                self.mkdir(parent, &name, perm, owner).map_err(to_io)?
            } else if md.is_file() {
                let attr = self
                    .create_file(parent, &name, perm, owner)
                    .map_err(to_io)?;
                let bytes = fs::read(&path)?;
                self.write(attr.ino, 0, &bytes).map_err(to_io)?;
                attr
            } else {
                return Err(io::Error::new(
                    io::ErrorKind::Unsupported,
                    format!(
                        "{}: only regular files and directories are supported",
                        path.display()
                    ),
                ));
            };
            if md.is_dir() {
                self.import_into(attr.ino, &path)?;
            }
            self.fsync(attr.ino).map_err(to_io)?;
            let times = (md.modified().ok(), md.accessed().ok());
            let _ = self.set_meta(attr.ino, None, None, None, times.1, times.0);
        }
        self.fsync(parent)
            .map_err(|e| io::Error::from_raw_os_error(e as i32))
    }

    /// Writes the current tree into `dir` (which must exist), replacing what it held.
    pub fn export(&self, dir: &Path) -> io::Result<()> {
        for entry in fs::read_dir(dir)? {
            let path = entry?.path();
            if fs::symlink_metadata(&path)?.is_dir() {
                fs::remove_dir_all(&path)?;
            } else {
                fs::remove_file(&path)?;
            }
        }
        self.export_from(ROOT, dir)
    }

    fn export_from(&self, ino: Ino, dir: &Path) -> io::Result<()> {
        let d = self
            .dir(ino)
            .map_err(|e| io::Error::from_raw_os_error(e as i32))?;
        for (name, child) in &d.entries {
            let Some(inode) = self.inodes.get(child) else {
                continue;
            };
            let path = dir.join(name);
            match &inode.body {
                Body::File(f) => fs::write(&path, &f.data)?,
                Body::Dir(_) => {
                    fs::create_dir(&path)?;
                    self.export_from(*child, &path)?;
                }
            }
            fs::set_permissions(
                &path,
                fs::Permissions::from_mode(u32::from(inode.meta.perm)),
            )?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ME: Owner = Owner { uid: 0, gid: 0 };

    fn fs() -> Model {
        Model::new(1 << 20, ME)
    }

    fn name(s: &str) -> &OsStr {
        OsStr::new(s)
    }

    fn content(m: &Model, parent: Ino, n: &str) -> Option<Vec<u8>> {
        let a = m.lookup(parent, name(n)).ok()?;
        Some(m.read(a.ino, 0, u32::MAX).unwrap().to_vec())
    }

    #[test]
    fn unsynced_writes_are_lost_and_synced_ones_survive() {
        let mut m = fs();
        let a = m.create_file(ROOT, name("a"), 0o600, ME).unwrap();
        m.fsync(ROOT).unwrap();
        m.write(a.ino, 0, b"hello").unwrap();
        m.fsync(a.ino).unwrap();
        m.write(a.ino, 5, b" world").unwrap();
        m.write(a.ino, 0, b"J").unwrap();
        assert_eq!(content(&m, ROOT, "a").unwrap(), b"Jello world");
        let r = m.power_loss();
        assert_eq!(r.files_rolled_back, 1);
        assert_eq!(content(&m, ROOT, "a").unwrap(), b"hello");
        // A write in the middle after a sync, then a sync: exactly that range changes.
        m.write(a.ino, 1, b"EL").unwrap();
        m.fsync(a.ino).unwrap();
        m.power_loss();
        assert_eq!(content(&m, ROOT, "a").unwrap(), b"hELlo");
    }

    #[test]
    fn a_new_name_needs_the_directory_synced_and_a_new_file_its_own_fsync() {
        let mut m = fs();
        let a = m.create_file(ROOT, name("a"), 0o600, ME).unwrap();
        m.write(a.ino, 0, b"data").unwrap();
        m.fsync(a.ino).unwrap();
        let r = m.power_loss();
        assert_eq!(r.inodes_lost, 1, "{r:?}");
        assert!(
            m.lookup(ROOT, name("a")).is_err(),
            "the name was never durable"
        );

        let b = m.create_file(ROOT, name("b"), 0o600, ME).unwrap();
        m.write(b.ino, 0, b"data").unwrap();
        m.fsync(ROOT).unwrap();
        m.power_loss();
        assert_eq!(
            content(&m, ROOT, "b").unwrap(),
            b"",
            "the name survives, the unsynced bytes do not"
        );
    }

    #[test]
    fn truncation_and_growth_are_data() {
        let mut m = fs();
        let a = m.create_file(ROOT, name("a"), 0o600, ME).unwrap();
        m.write(a.ino, 0, &[7; 100]).unwrap();
        m.fsync(a.ino).unwrap();
        m.fsync(ROOT).unwrap();
        m.set_len(a.ino, 10).unwrap();
        m.write(a.ino, 50, &[9; 10]).unwrap();
        let mut expect = vec![7u8; 10];
        expect.extend([0; 40]);
        expect.extend([9; 10]);
        assert_eq!(content(&m, ROOT, "a").unwrap(), expect);
        m.power_loss();
        assert_eq!(content(&m, ROOT, "a").unwrap(), vec![7; 100]);
        m.set_len(a.ino, 10).unwrap();
        m.write(a.ino, 50, &[9; 10]).unwrap();
        m.fsync(a.ino).unwrap();
        m.power_loss();
        assert_eq!(content(&m, ROOT, "a").unwrap(), expect);
    }

    #[test]
    fn renames_and_unlinks_roll_back_per_directory() {
        let mut m = fs();
        let inc = m.mkdir(ROOT, name("incoming"), 0o700, ME).unwrap();
        let blobs = m.mkdir(ROOT, name("blobs"), 0o700, ME).unwrap();
        m.fsync(ROOT).unwrap();
        let part = m.create_file(inc.ino, name("x.part"), 0o600, ME).unwrap();
        m.write(part.ino, 0, b"body").unwrap();
        m.fsync(part.ino).unwrap();
        m.fsync(inc.ino).unwrap();
        m.rename(inc.ino, name("x.part"), blobs.ino, name("x"), false, false)
            .unwrap();
        // Only the destination synced: the body has two durable names.
        m.fsync(blobs.ino).unwrap();
        m.power_loss();
        assert_eq!(content(&m, inc.ino, "x.part").unwrap(), b"body");
        assert_eq!(content(&m, blobs.ino, "x").unwrap(), b"body");
        // Renaming one name of a file onto another of its names does nothing (POSIX).
        m.rename(inc.ino, name("x.part"), blobs.ino, name("x"), false, false)
            .unwrap();
        assert!(m.lookup(inc.ino, name("x.part")).is_ok());
        m.unlink(inc.ino, name("x.part")).unwrap();
        m.fsync(inc.ino).unwrap();
        // One durable name. Then an unsynced unlink comes back.
        m.unlink(blobs.ino, name("x")).unwrap();
        assert!(m.lookup(blobs.ino, name("x")).is_err());
        m.power_loss();
        assert!(m.lookup(inc.ino, name("x.part")).is_err());
        assert_eq!(content(&m, blobs.ino, "x").unwrap(), b"body");
        // A synced unlink frees the file.
        m.unlink(blobs.ino, name("x")).unwrap();
        m.fsync(blobs.ino).unwrap();
        assert_eq!(m.usage().files, 0);
        assert_eq!(m.usage().bytes, 0);
    }

    #[test]
    fn an_unsynced_directory_loses_everything_in_it() {
        let mut m = fs();
        let d = m.mkdir(ROOT, name("d"), 0o700, ME).unwrap();
        let f = m.create_file(d.ino, name("f"), 0o600, ME).unwrap();
        m.write(f.ino, 0, b"x").unwrap();
        m.fsync(f.ino).unwrap();
        m.fsync(d.ino).unwrap();
        let r = m.power_loss();
        assert_eq!(r.inodes_lost, 2);
        assert!(m.lookup(ROOT, name("d")).is_err());
        assert!(m.attr(d.ino).is_err(), "the number names nothing now");
        let again = m.mkdir(ROOT, name("d"), 0o700, ME).unwrap();
        assert!(again.ino > f.ino, "numbers are not reused");
    }

    #[test]
    fn open_files_outlive_their_names_until_released_and_handles_die_with_the_power() {
        let mut m = fs();
        let a = m.create_file(ROOT, name("a"), 0o600, ME).unwrap();
        let fh = m.open(a.ino).unwrap();
        m.unlink(ROOT, name("a")).unwrap();
        m.write(a.ino, 0, b"still here").unwrap();
        assert_eq!(m.read(a.ino, 0, 100).unwrap(), b"still here");
        m.release(fh);
        assert!(m.attr(a.ino).is_err());
        let b = m.create_file(ROOT, name("b"), 0o600, ME).unwrap();
        m.fsync(ROOT).unwrap();
        let fh = m.open(b.ino).unwrap();
        assert_eq!(m.open_handles(), 1);
        m.power_loss();
        assert_eq!(m.open_handles(), 0);
        m.release(fh); // a late release from the dead process is harmless
        assert!(m.lookup(ROOT, name("b")).is_ok());
    }

    #[test]
    fn rename_rules() {
        let mut m = fs();
        let d = m.mkdir(ROOT, name("d"), 0o700, ME).unwrap();
        m.mkdir(d.ino, name("sub"), 0o700, ME).unwrap();
        m.create_file(ROOT, name("f"), 0o600, ME).unwrap();
        m.create_file(ROOT, name("g"), 0o600, ME).unwrap();
        let no = |r: Result<(), Errno>| r.unwrap_err();
        assert_eq!(
            no(m.rename(ROOT, name("d"), d.ino, name("x"), false, false)),
            Errno::EINVAL
        );
        assert_eq!(
            no(m.rename(ROOT, name("f"), ROOT, name("d"), false, false)),
            Errno::EISDIR
        );
        assert_eq!(
            no(m.rename(ROOT, name("f"), ROOT, name("g"), true, false)),
            Errno::EEXIST
        );
        m.rename(ROOT, name("f"), ROOT, name("g"), false, false)
            .unwrap();
        assert!(m.lookup(ROOT, name("f")).is_err());
        assert_eq!(m.usage().files, 1, "the replaced file is gone");
        assert_eq!(no(m.rmdir(ROOT, name("d"))), Errno::ENOTEMPTY);
    }

    #[test]
    fn memory_is_capped() {
        let mut m = Model::new(100, ME);
        let a = m.create_file(ROOT, name("a"), 0o600, ME).unwrap();
        assert_eq!(m.write(a.ino, 0, &[1; 101]).unwrap_err(), Errno::ENOSPC);
        m.write(a.ino, 0, &[1; 50]).unwrap();
        m.fsync(a.ino).unwrap();
        assert_eq!(m.usage().bytes, 100);
        assert_eq!(m.write(a.ino, 50, &[1]).unwrap_err(), Errno::ENOSPC);
    }

    #[test]
    fn import_and_export_round_trip() {
        let src = tempfile::tempdir().unwrap();
        std::fs::create_dir(src.path().join("blobs")).unwrap();
        std::fs::write(src.path().join("blobs/one"), b"1").unwrap();
        std::fs::write(src.path().join("store"), b"db").unwrap();
        let mut m = fs();
        m.import(src.path()).unwrap();
        let r = m.power_loss();
        assert_eq!(r, PowerLoss::default(), "imported state is durable");
        let blobs = m.lookup(ROOT, name("blobs")).unwrap();
        assert_eq!(content(&m, blobs.ino, "one").unwrap(), b"1");
        let out = tempfile::tempdir().unwrap();
        std::fs::write(out.path().join("stale"), b"x").unwrap();
        m.export(out.path()).unwrap();
        assert_eq!(std::fs::read(out.path().join("store")).unwrap(), b"db");
        assert_eq!(std::fs::read(out.path().join("blobs/one")).unwrap(), b"1");
        assert!(!out.path().join("stale").exists());
    }
}
