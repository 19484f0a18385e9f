//! `struct kmod_ctx` owner.

use std::cell::RefCell;
use std::ffi::{CString, c_char, c_int, c_void};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::ptr::NonNull;

use nix::errno::Errno;

use super::ffi::{self, Api, kmod_ctx, kmod_list, kmod_module};
use super::module::{Module, ModuleList};
use super::{Error, check, opt_string};

/// One line libkmod wanted to log. libkmod passes a printf format plus a
/// `va_list` we cannot portably format, so `message` is the format string
/// itself (e.g. `could not open moddep file '%s'`), enough to tell what went
/// wrong. Kept instead of printed so that `--json` output stays clean.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogLine {
    /// syslog priority (3 = error, 4 = warning, 6 = info, 7 = debug).
    pub priority: i32,
    /// libkmod function that logged.
    pub function: String,
    /// The format string, trimmed.
    pub message: String,
}

/// An owned libkmod context (`kmod_new` … `kmod_unref`).
///
/// It fixes the module directory (`<root>/lib/modules/<release>`) and the
/// modprobe.d configuration; both are read once, when it is created.
pub struct Context {
    ptr: NonNull<kmod_ctx>,
    api: &'static Api,
    /// Target of the log callback's data pointer. Boxed so that its address
    /// is stable while the context is alive.
    log: Box<RefCell<Vec<LogLine>>>,
}

/// libkmod log callback: records the line in the context's buffer.
///
/// # Safety
/// Called by libkmod with `data` = the pointer given to `kmod_set_log_fn`
/// (a live `RefCell<Vec<LogLine>>` or NULL) and valid C strings or NULL.
unsafe extern "C" fn log_trampoline(
    data: *mut c_void,
    priority: c_int,
    _file: *const c_char,
    _line: c_int,
    function: *const c_char,
    format: *const c_char,
    _args: *mut c_void,
) {
    if data.is_null() {
        return;
    }
    // SAFETY: `data` is the address of the `RefCell` boxed in the `Context`
    // that registered this callback; the context re-registers a NULL data
    // pointer before releasing the box (see `Drop for Context`).
    let cell = unsafe { &*data.cast::<RefCell<Vec<LogLine>>>() };
    // SAFETY: libkmod passes NUL-terminated strings (`__func__` and a
    // format literal) or NULL; they outlive this call.
    let (function, message) = unsafe { (opt_string(function), opt_string(format)) };
    if let Ok(mut lines) = cell.try_borrow_mut() {
        lines.push(LogLine {
            priority,
            function: function.unwrap_or_default(),
            message: message.unwrap_or_default().trim().to_owned(),
        });
    }
}

fn cstring(call: &'static str, bytes: &[u8]) -> Result<CString, Error> {
    CString::new(bytes).map_err(|_| Error::Nul {
        call,
        arg: String::from_utf8_lossy(bytes).into_owned(),
    })
}

impl Context {
    /// `kmod_new(dirname, config_paths)`.
    ///
    /// `dirname`: the module directory, `None` for `/lib/modules/$(uname -r)`.
    /// `config_paths`: modprobe.d directories or files, highest precedence
    /// first; `None` for libkmod's built-in list (/etc, /run, /usr/local/lib,
    /// [/usr/lib,] /lib `modprobe.d`). The configuration is parsed here, so a
    /// later change on disk needs a new context.
    pub fn new(dirname: Option<&Path>, config_paths: Option<&[PathBuf]>) -> Result<Self, Error> {
        let api = ffi::api()?;
        let dir = dirname
            .map(|d| cstring("kmod_new", d.as_os_str().as_bytes()))
            .transpose()?;
        let paths = config_paths
            .map(|ps| {
                ps.iter()
                    .map(|p| cstring("kmod_new", p.as_os_str().as_bytes()))
                    .collect::<Result<Vec<_>, _>>()
            })
            .transpose()?;
        let mut path_ptrs: Vec<*const c_char> = Vec::new();
        if let Some(ps) = &paths {
            path_ptrs.extend(ps.iter().map(|p| p.as_ptr()));
            path_ptrs.push(std::ptr::null());
        }
        // SAFETY: `dir` and every element of `path_ptrs` point to CStrings
        // alive until the end of this function; `path_ptrs` is
        // NULL-terminated as kmod_new requires. kmod_new parses the
        // configuration before returning and keeps copies, not our pointers.
        let raw = unsafe {
            (api.kmod_new)(
                dir.as_ref().map_or(std::ptr::null(), |d| d.as_ptr()),
                if paths.is_some() {
                    path_ptrs.as_ptr()
                } else {
                    std::ptr::null()
                },
            )
        };
        let ptr = NonNull::new(raw).ok_or_else(|| Error::Call {
            call: "kmod_new",
            arg: dirname.map(|d| d.display().to_string()).unwrap_or_default(),
            // kmod_new only fails on allocation failure.
            errno: Errno::ENOMEM,
        })?;
        let log = Box::new(RefCell::new(Vec::new()));
        // SAFETY: `ptr` is a live context from kmod_new. The data pointer is
        // the boxed RefCell owned by the returned `Context`; `Drop` clears it
        // before the box is freed.
        unsafe {
            (api.kmod_set_log_fn)(
                ptr.as_ptr(),
                Some(log_trampoline),
                std::ptr::from_ref::<RefCell<Vec<LogLine>>>(&log).cast::<c_void>(),
            );
        }
        Ok(Self { ptr, api, log })
    }

    /// `kmod_load_resources`: opens the modules.*.bin indexes now instead of
    /// on first lookup. Fails with ENOENT when the module directory has no
    /// indexes (not depmod'ed, or no module support).
    pub fn load_resources(&self) -> Result<(), Error> {
        // SAFETY: `self.ptr` is a live context owned by `self`.
        let ret = unsafe { (self.api.kmod_load_resources)(self.ptr.as_ptr()) };
        check(
            "kmod_load_resources",
            &self.dirname().display().to_string(),
            ret,
        )
        .map(drop)
    }

    /// `kmod_get_dirname`: the module directory this context reads.
    pub fn dirname(&self) -> PathBuf {
        // SAFETY: live context; the returned string is owned by it and copied
        // out before any other call.
        let s = unsafe { opt_string((self.api.kmod_get_dirname)(self.ptr.as_ptr())) };
        PathBuf::from(s.unwrap_or_default())
    }

    /// `kmod_module_new_from_lookup`: resolves a name or alias the way
    /// modprobe does (config aliases, modules.dep, symbols, commands,
    /// modules.alias, builtin). An empty list means "not found".
    pub fn lookup(&self, name: &str) -> Result<ModuleList<'_>, Error> {
        const CALL: &str = "kmod_module_new_from_lookup";
        let c = cstring(CALL, name.as_bytes())?;
        let mut list: *mut kmod_list = std::ptr::null_mut();
        // SAFETY: live context, valid C string, and `list` is a valid out
        // pointer initialised to NULL as libkmod requires (it appends to it).
        let ret = unsafe {
            (self.api.kmod_module_new_from_lookup)(self.ptr.as_ptr(), c.as_ptr(), &mut list)
        };
        // SAFETY: on success `list` is NULL or a list whose module references
        // we now own; on failure libkmod has already freed it and set NULL.
        let owned = unsafe { ModuleList::from_raw(self.api, list) };
        check(CALL, name, ret)?;
        Ok(owned)
    }

    /// `kmod_module_new_from_name`: a module handle by its exact name, with
    /// no alias resolution (used for modules already known by name, e.g.
    /// from /proc/modules or a dependency list).
    pub fn module(&self, name: &str) -> Result<Module<'_>, Error> {
        const CALL: &str = "kmod_module_new_from_name";
        let c = cstring(CALL, name.as_bytes())?;
        let mut m: *mut kmod_module = std::ptr::null_mut();
        // SAFETY: live context, valid C string, valid out pointer.
        let ret =
            unsafe { (self.api.kmod_module_new_from_name)(self.ptr.as_ptr(), c.as_ptr(), &mut m) };
        check(CALL, name, ret)?;
        // SAFETY: on success libkmod stored a module reference we now own.
        unsafe { Module::from_raw(self.api, m) }.ok_or_else(|| Error::Call {
            call: CALL,
            arg: name.to_owned(),
            errno: Errno::ENOENT,
        })
    }

    /// The module names blacklisted by the configuration
    /// (`kmod_config_get_blacklists`), including `modprobe.blacklist=` from
    /// the kernel command line.
    pub(crate) fn blacklist(&self) -> Vec<String> {
        let mut out = Vec::new();
        // SAFETY: live context; the iterator is freed below and not used
        // after that.
        let iter = unsafe { (self.api.kmod_config_get_blacklists)(self.ptr.as_ptr()) };
        if iter.is_null() {
            return out;
        }
        // SAFETY: `iter` is a live iterator from kmod_config_get_blacklists;
        // libkmod's iterators start before the first element, so
        // `kmod_config_iter_next` must be called first. The key string is
        // owned by the context's config and copied out at once.
        unsafe {
            while (self.api.kmod_config_iter_next)(iter) {
                if let Some(k) = opt_string((self.api.kmod_config_iter_get_key)(iter)) {
                    out.push(k);
                }
            }
            (self.api.kmod_config_iter_free_iter)(iter);
        }
        out
    }

    /// Takes the lines libkmod logged so far.
    #[expect(dead_code, reason = "shown to the user from the next commit on")]
    pub(crate) fn take_log(&self) -> Vec<LogLine> {
        self.log.take()
    }
}

impl Drop for Context {
    fn drop(&mut self) {
        // SAFETY: `self.ptr` is the live context we own. Re-registering the
        // callback with NULL data first means that any log line libkmod emits
        // while releasing is dropped instead of touching `self.log`. No
        // `Module<'_>` can be alive here: they borrow `self`.
        unsafe {
            (self.api.kmod_set_log_fn)(self.ptr.as_ptr(), Some(log_trampoline), std::ptr::null());
            (self.api.kmod_unref)(self.ptr.as_ptr());
        }
    }
}
