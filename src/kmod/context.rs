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

/// One line libkmod logged (at up to `LOG_INFO`). Kept instead of printed,
/// so that `--json` output stays clean; the module operations attach the
/// lines to errors and show them under `-v`.
///
/// `message` is the formatted line (`Failed to insert module
/// '/lib/modules/…/xt_state.ko': Operation not permitted`) on the targets
/// where the `va_list` can be handed to `vsnprintf` (see
/// [`ffi::VA_LIST_IS_POINTER`]); elsewhere it is the format string itself
/// (`Failed to insert module '%s': %m`), still enough to tell what happened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogLine {
    /// syslog priority (3 = error, 4 = warning, 6 = info, 7 = debug).
    pub priority: i32,
    /// libkmod function that logged.
    pub function: String,
    /// The message, trimmed.
    pub message: String,
}

impl std::fmt::Display for LogLine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let level = match self.priority {
            ..=3 => "error",
            4 => "warning",
            5 => "notice",
            6 => "info",
            _ => "debug",
        };
        write!(f, "{level}: {}: {}", self.function, self.message)
    }
}

/// The longest log line kept, in bytes; longer ones are cut (vsnprintf
/// truncates and NUL-terminates).
const LOG_LINE_MAX: usize = 1024;

/// Formats libkmod's `format` with its `va_list`, or returns the format
/// string itself where that is not possible.
///
/// # Safety
/// `format` is NULL or a NUL-terminated printf format, and `args` is the
/// `va_list` libkmod passed with it to the log callback, not yet consumed
/// (it is consumed here: call this at most once per callback).
unsafe fn format_log(format: *const c_char, args: *mut c_void) -> Option<String> {
    if format.is_null() {
        return None;
    }
    if ffi::VA_LIST_IS_POINTER && !args.is_null() {
        let mut buf = [0 as c_char; LOG_LINE_MAX];
        // SAFETY: on these targets `args` is the pointer by which the
        // va_list reached us (ffi::VA_LIST_IS_POINTER), so passing it on is
        // what C's `vsnprintf(buf, n, format, args)` does; `format` and the
        // arguments come from libkmod and match (libkmod's log macros are
        // printf-checked); `buf` is writable for `LOG_LINE_MAX` bytes and
        // vsnprintf writes at most that many, NUL included. The va_list is
        // used once, here.
        let n = unsafe { ffi::vsnprintf(buf.as_mut_ptr(), buf.len(), format, args) };
        if n >= 0 {
            // SAFETY: vsnprintf NUL-terminated `buf` (size > 0).
            return unsafe { opt_string(buf.as_ptr()) };
        }
    }
    // SAFETY: non-NULL, NUL-terminated format string owned by libkmod.
    unsafe { opt_string(format) }
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
    args: *mut c_void,
) {
    if data.is_null() {
        return;
    }
    // SAFETY: `data` is the address of the `RefCell` boxed in the `Context`
    // that registered this callback; the context re-registers a NULL data
    // pointer before releasing the box (see `Drop for Context`).
    let cell = unsafe { &*data.cast::<RefCell<Vec<LogLine>>>() };
    // SAFETY: libkmod passes NUL-terminated strings (`__func__` and a
    // format literal) or NULL, they outlive this call, and `args` is the
    // va_list that goes with `format`, used once (by format_log).
    let (function, message) = unsafe { (opt_string(function), format_log(format, args)) };
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
            (api.kmod_set_log_priority)(ptr.as_ptr(), ffi::LOG_INFO);
            (api.kmod_set_log_fn)(
                ptr.as_ptr(),
                Some(log_trampoline),
                std::ptr::from_ref::<RefCell<Vec<LogLine>>>(&log).cast::<c_void>(),
            );
        }
        // libkmod announces the new log function at info level: not news.
        log.borrow_mut().clear();
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

    /// `kmod_module_new_from_path`: a module handle for one `.ko` file
    /// (compressed or not), named after the file. Used by the parallel
    /// loader's workers, whose contexts read no configuration: the path and
    /// the options come from the resolving context's plan.
    pub fn module_from_path(&self, path: &Path) -> Result<Module<'_>, Error> {
        const CALL: &str = "kmod_module_new_from_path";
        let c = cstring(CALL, path.as_os_str().as_bytes())?;
        let mut m: *mut kmod_module = std::ptr::null_mut();
        // SAFETY: live context, valid C string, valid out pointer; libkmod
        // copies the path.
        let ret =
            unsafe { (self.api.kmod_module_new_from_path)(self.ptr.as_ptr(), c.as_ptr(), &mut m) };
        let arg = path.display().to_string();
        check(CALL, &arg, ret)?;
        // SAFETY: on success libkmod stored a module reference we now own.
        unsafe { Module::from_raw(self.api, m) }.ok_or(Error::Call {
            call: CALL,
            arg,
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

#[cfg(test)]
mod tests {
    use super::*;

    /// libkmod's own log lines reach us formatted: the `%s` (module name)
    /// and `%m` (strerror) of `could not remove '%s': %m` are filled in.
    /// Removing a module no kernel has fails whatever the host (ENOENT,
    /// ENOSYS without module support, EPERM without root) and changes
    /// nothing.
    #[test]
    fn log_lines_are_formatted_and_kept() {
        let tmp = tempfile::tempdir().unwrap();
        let ctx = Context::new(Some(tmp.path()), Some(&[tmp.path().join("modprobe.d")])).unwrap();
        assert_eq!(
            ctx.take_log(),
            Vec::new(),
            "registration chatter is dropped"
        );
        let name = "nfkit_test_no_such_module";
        let m = ctx.module(name).unwrap();
        let errno = m.remove(0).unwrap_err().errno().unwrap();
        let log = ctx.take_log();
        assert_eq!(log.len(), 1, "{log:?}");
        assert_eq!(log[0].priority, 3);
        assert_eq!(log[0].function, "kmod_module_remove_module");
        if ffi::VA_LIST_IS_POINTER {
            assert_eq!(
                log[0].message,
                format!("could not remove '{name}': {}", errno.desc())
            );
        } else {
            assert_eq!(log[0].message, "could not remove '%s': %m");
        }
        assert_eq!(
            log[0].to_string(),
            format!("error: kmod_module_remove_module: {}", log[0].message)
        );
        assert!(ctx.take_log().is_empty(), "taken once");
    }
}
