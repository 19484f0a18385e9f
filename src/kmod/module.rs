//! `struct kmod_module` and `struct kmod_list` owners, and probe-insert.

use std::cell::RefCell;
use std::ffi::{CString, c_char, c_int, c_void};
use std::marker::PhantomData;
use std::ptr::NonNull;

use nix::errno::Errno;

use super::context::Context;
use super::ffi::{Api, kmod_list, kmod_module};
use super::{Error, check, opt_string};

/// `enum kmod_module_initstate`, plus the values libkmod may add later.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum InitState {
    /// Compiled into the kernel (modules.builtin says so).
    Builtin,
    /// Loaded and initialised.
    Live,
    /// Being loaded (or `/sys/module/M` without `initstate`, see
    /// kmod commit fd44a98).
    Coming,
    /// Being unloaded.
    Going,
    /// A value this nfkit does not know.
    Other(i32),
}

impl InitState {
    fn from_raw(v: c_int) -> Self {
        match v {
            0 => InitState::Builtin,
            1 => InitState::Live,
            2 => InitState::Coming,
            3 => InitState::Going,
            v => InitState::Other(v),
        }
    }
}

/// An owned module reference (`kmod_module_unref` on drop), tied to the
/// context it came from.
pub struct Module<'ctx> {
    ptr: NonNull<kmod_module>,
    api: &'static Api,
    _ctx: PhantomData<&'ctx Context>,
}

// The raw accessors below are each the single call site of one libkmod
// getter; `Module`'s methods and the probe callbacks (which only get a raw
// pointer) share them.

/// # Safety
/// `m` must be a live module reference.
unsafe fn raw_name(api: &Api, m: *const kmod_module) -> String {
    // SAFETY: live module (caller); the name is owned by it and copied out.
    unsafe { opt_string((api.kmod_module_get_name)(m)) }.unwrap_or_default()
}

/// # Safety
/// `m` must be a live module reference.
unsafe fn raw_path(api: &Api, m: *const kmod_module) -> Option<String> {
    // SAFETY: live module (caller); the path is owned by it and copied out.
    unsafe { opt_string((api.kmod_module_get_path)(m)) }
}

/// # Safety
/// `m` must be a live module reference.
unsafe fn raw_install_commands(api: &Api, m: *const kmod_module) -> Option<String> {
    // SAFETY: live module (caller); the string is owned by the context's
    // config and copied out.
    unsafe { opt_string((api.kmod_module_get_install_commands)(m)) }
}

/// # Safety
/// `m` must be a live module reference.
unsafe fn raw_initstate(api: &Api, m: *const kmod_module) -> c_int {
    // SAFETY: live module (caller).
    unsafe { (api.kmod_module_get_initstate)(m) }
}

impl<'ctx> Module<'ctx> {
    /// Takes ownership of one module reference.
    ///
    /// # Safety
    /// `raw` must be NULL or a module reference the caller owns (and gives
    /// up), from a context that outlives `'ctx`.
    pub(crate) unsafe fn from_raw(api: &'static Api, raw: *mut kmod_module) -> Option<Self> {
        NonNull::new(raw).map(|ptr| Module {
            ptr,
            api,
            _ctx: PhantomData,
        })
    }

    fn raw(&self) -> *mut kmod_module {
        self.ptr.as_ptr()
    }

    /// `kmod_module_get_name`: the real module name (`nf_conntrack`), even
    /// when it was looked up by alias.
    pub fn name(&self) -> String {
        // SAFETY: `self` owns a live reference.
        unsafe { raw_name(self.api, self.raw()) }
    }

    /// `kmod_module_get_path`: the `.ko` file; `None` for builtin modules.
    pub(crate) fn path(&self) -> Option<String> {
        // SAFETY: `self` owns a live reference.
        unsafe { raw_path(self.api, self.raw()) }
    }

    /// `kmod_module_get_options`: options from modprobe.d and the kernel
    /// command line that apply to this module handle. Note: a line keyed by
    /// an alias applies only when the handle came from a lookup of that alias.
    pub(crate) fn options(&self) -> Option<String> {
        // SAFETY: `self` owns a live reference; the string is cached in the
        // module and copied out at once.
        unsafe { opt_string((self.api.kmod_module_get_options)(self.raw())) }
    }

    /// `kmod_module_get_install_commands`: the configured `install` command.
    pub(crate) fn install_commands(&self) -> Option<String> {
        // SAFETY: `self` owns a live reference.
        unsafe { raw_install_commands(self.api, self.raw()) }
    }

    /// `kmod_module_get_remove_commands`: the configured `remove` command.
    pub(crate) fn remove_commands(&self) -> Option<String> {
        // SAFETY: `self` owns a live reference; the string is copied out.
        unsafe { opt_string((self.api.kmod_module_get_remove_commands)(self.raw())) }
    }

    /// `kmod_module_get_initstate`. `Err(ENOENT)` means "not loaded".
    ///
    /// Builtin-ness comes from the context's modules.builtin index; the other
    /// states are read from the running kernel's `/sys/module/<name>`,
    /// whatever module directory the context was made for.
    pub(crate) fn initstate(&self) -> Result<InitState, Errno> {
        // SAFETY: `self` owns a live reference.
        let v = unsafe { raw_initstate(self.api, self.raw()) };
        if v < 0 {
            Err(Errno::from_raw(-v))
        } else {
            Ok(InitState::from_raw(v))
        }
    }

    /// `kmod_module_get_refcnt` (from `/sys/module/<name>/refcnt`).
    pub(crate) fn refcnt(&self) -> Result<u32, Error> {
        // SAFETY: `self` owns a live reference.
        let ret = unsafe { (self.api.kmod_module_get_refcnt)(self.raw()) };
        check("kmod_module_get_refcnt", &self.name(), ret).map(|v| v.unsigned_abs())
    }

    /// `kmod_module_get_holders` (from `/sys/module/<name>/holders`).
    pub(crate) fn holders(&self) -> ModuleList<'ctx> {
        // SAFETY: `self` owns a live reference; the returned list (or NULL)
        // holds references we now own.
        unsafe { ModuleList::from_raw(self.api, (self.api.kmod_module_get_holders)(self.raw())) }
    }

    /// `kmod_module_get_dependencies`: hard dependencies from modules.dep,
    /// in modules.dep order (most dependent first).
    pub fn dependencies(&self) -> ModuleList<'ctx> {
        // SAFETY: as for `holders`.
        unsafe {
            ModuleList::from_raw(
                self.api,
                (self.api.kmod_module_get_dependencies)(self.raw()),
            )
        }
    }

    /// `kmod_module_get_softdeps`: (pre, post) soft dependencies from
    /// modprobe.d `softdep` lines and the module's own `softdep` modinfo.
    pub(crate) fn softdeps(&self) -> Result<(ModuleList<'ctx>, ModuleList<'ctx>), Error> {
        let mut pre: *mut kmod_list = std::ptr::null_mut();
        let mut post: *mut kmod_list = std::ptr::null_mut();
        // SAFETY: live module; both out pointers are valid and NULL as
        // libkmod requires.
        let ret = unsafe { (self.api.kmod_module_get_softdeps)(self.raw(), &mut pre, &mut post) };
        // SAFETY: whatever libkmod stored (NULL or lists) is now ours.
        let (pre, post) = unsafe {
            (
                ModuleList::from_raw(self.api, pre),
                ModuleList::from_raw(self.api, post),
            )
        };
        check("kmod_module_get_softdeps", &self.name(), ret)?;
        Ok((pre, post))
    }

    /// `kmod_module_get_info`: the modinfo key/value pairs (`parm`,
    /// `parmtype`, `alias`, `depends`, `vermagic`, …), in file order.
    pub fn info(&self) -> Result<Vec<(String, String)>, Error> {
        let mut list: *mut kmod_list = std::ptr::null_mut();
        // SAFETY: live module, valid NULL-initialised out pointer.
        let ret = unsafe { (self.api.kmod_module_get_info)(self.raw(), &mut list) };
        check("kmod_module_get_info", &self.name(), ret)?;
        let mut out = Vec::new();
        let mut cur = list;
        while !cur.is_null() {
            // SAFETY: `cur` is a node of the info list we own; key and value
            // are owned by the node and copied out; kmod_list_next returns
            // the next node or NULL at the end.
            unsafe {
                let k = opt_string((self.api.kmod_module_info_get_key)(cur));
                let v = opt_string((self.api.kmod_module_info_get_value)(cur));
                out.push((k.unwrap_or_default(), v.unwrap_or_default()));
                cur = (self.api.kmod_list_next)(list, cur);
            }
        }
        if !list.is_null() {
            // SAFETY: `list` came from kmod_module_get_info and is freed once.
            unsafe { (self.api.kmod_module_info_free_list)(list) };
        }
        Ok(out)
    }

    /// `kmod_module_remove_module` (`delete_module(2)`; libkmod always adds
    /// `O_NONBLOCK`, so a module in use fails with EAGAIN/EWOULDBLOCK).
    pub(crate) fn remove(&self, flags: u32) -> Result<(), Error> {
        // SAFETY: live module.
        let ret = unsafe { (self.api.kmod_module_remove_module)(self.raw(), flags) };
        check("kmod_module_remove_module", &self.name(), ret).map(drop)
    }

    /// `kmod_module_insert_module`: inserts this one module (no
    /// dependencies, no configuration, no commands) with exactly `options`
    /// (`finit_module` on the file, or `init_module` on its decompressed
    /// image where the kernel cannot decompress it). Already loaded is
    /// `EEXIST`.
    pub fn insert(&self, options: &str) -> Result<(), Error> {
        const CALL: &str = "kmod_module_insert_module";
        let opts = CString::new(options).map_err(|_| Error::Nul {
            call: CALL,
            arg: options.to_owned(),
        })?;
        // SAFETY: live module; `opts` is a valid C string that outlives the
        // call (libkmod copies what it passes to the kernel); flags 0 (no
        // forcing).
        let ret = unsafe { (self.api.kmod_module_insert_module)(self.raw(), 0, opts.as_ptr()) };
        check(CALL, &self.name(), ret).map(drop)
    }

    /// `kmod_module_probe_insert_module`: modprobe's insert, with
    /// dependencies, softdeps, options and blacklist handling (see
    /// [`super::probe_flags`]).
    ///
    /// `run_install(module, command)` is called instead of `system(3)` for a
    /// configured install command: return `Ok(())` to count it as run,
    /// `Err(errno)` to stop. It must not run the command; nfkit never does.
    ///
    /// Every module libkmod is about to insert (or, with `DRY_RUN`, would
    /// insert) is reported in [`ProbeOutcome::actions`], in order; modules
    /// already in the kernel are skipped unless `IGNORE_LOADED`.
    pub fn probe_insert(
        &self,
        flags: u32,
        extra_options: Option<&str>,
        run_install: &mut dyn FnMut(&str, &str) -> Result<(), Errno>,
    ) -> ProbeOutcome {
        const CALL: &str = "kmod_module_probe_insert_module";
        let name = self.name();
        let opts = match extra_options.map(CString::new).transpose() {
            Ok(o) => o,
            Err(_) => {
                return ProbeOutcome {
                    result: Err(Error::Nul {
                        call: CALL,
                        arg: extra_options.unwrap_or_default().to_owned(),
                    }),
                    actions: Vec::new(),
                };
            }
        };
        let mut cb: &mut dyn FnMut(&str, &str) -> Result<(), Errno> = run_install;
        let data = std::ptr::from_mut(&mut cb).cast::<c_void>();
        PROBE_ACTIONS.with(|a| a.borrow_mut().clear());
        // SAFETY: live module; `opts` outlives the call; `data` points to
        // `cb`, a local that outlives the call and is only read by
        // `run_install_trampoline` as the same type; the trampolines never
        // unwind (they do not panic) and never keep the pointers they get.
        let ret = unsafe {
            (self.api.kmod_module_probe_insert_module)(
                self.raw(),
                flags,
                opts.as_ref().map_or(std::ptr::null(), |o| o.as_ptr()),
                Some(run_install_trampoline),
                data,
                Some(print_action_trampoline),
            )
        };
        let actions = PROBE_ACTIONS.with(|a| std::mem::take(&mut *a.borrow_mut()));
        ProbeOutcome {
            result: check(CALL, &name, ret).map(|v| v.unsigned_abs()),
            actions,
        }
    }
}

impl Module<'_> {
    /// Test-only (`nfkit __confinement-test kmod-install`): the mistake nfkit
    /// never makes elsewhere — a probe *without* a `run_install` callback,
    /// so that libkmod runs a modprobe.d `install` command itself
    /// (`system()`). Under nfkit's seccomp filter the shell cannot start:
    /// this proves it. Returns libkmod's result.
    #[doc(hidden)]
    pub fn probe_insert_letting_libkmod_run_commands(&self, flags: u32) -> Result<u32, Error> {
        const CALL: &str = "kmod_module_probe_insert_module";
        // SAFETY: live module; no options, no callbacks, no data pointer.
        let ret = unsafe {
            (self.api.kmod_module_probe_insert_module)(
                self.raw(),
                flags,
                std::ptr::null(),
                None,
                std::ptr::null_mut(),
                None,
            )
        };
        check(CALL, &self.name(), ret).map(|v| v.unsigned_abs())
    }
}

impl Drop for Module<'_> {
    fn drop(&mut self) {
        // SAFETY: we own exactly one reference to a live module.
        unsafe { (self.api.kmod_module_unref)(self.raw()) };
    }
}

impl std::fmt::Debug for Module<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("Module").field(&self.name()).finish()
    }
}

/// One step libkmod reported through `print_action`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProbeAction {
    /// Module name.
    pub module: String,
    /// `.ko` path; `None` for builtin modules and pure aliases.
    pub path: Option<String>,
    /// True when the module is handled by its install command.
    pub install: bool,
    /// The install command, when `install`.
    pub install_command: Option<String>,
    /// True when the module is builtin (no path, initstate BUILTIN).
    pub builtin: bool,
    /// Options libkmod passes: modprobe.d/cmdline first, then the extra
    /// options (target only).
    pub options: String,
}

/// What `probe_insert` did.
#[derive(Debug)]
pub struct ProbeOutcome {
    /// `Ok(0)`: done; `Ok(flag)`: stopped by a blacklist flag (the flag is
    /// returned); `Err`: libkmod's negative errno.
    pub result: Result<u32, Error>,
    /// Modules reported by `print_action`, in order.
    pub actions: Vec<ProbeAction>,
}

thread_local! {
    /// `print_action` has no user-data argument, so its records go to a
    /// per-thread buffer that `probe_insert` clears before and drains after
    /// the call. libkmod calls the callback on the calling thread only.
    static PROBE_ACTIONS: RefCell<Vec<ProbeAction>> = const { RefCell::new(Vec::new()) };
}

/// # Safety
/// Called by libkmod during `kmod_module_probe_insert_module` with a live
/// module and a NUL-terminated options string (or NULL).
unsafe extern "C" fn print_action_trampoline(
    m: *mut kmod_module,
    install: bool,
    options: *const c_char,
) {
    let Ok(api) = super::ffi::api() else { return };
    // SAFETY: libkmod passes a live module of its probe list and an options
    // string it owns for the duration of this call.
    let (module, path, options, install_command) = unsafe {
        (
            raw_name(api, m),
            raw_path(api, m),
            opt_string(options).unwrap_or_default(),
            if install {
                raw_install_commands(api, m)
            } else {
                None
            },
        )
    };
    // Only a module without a file can be built in: no sysfs lookup for
    // the others (it was one per module of every sequence).
    let state = if !install && path.is_none() {
        // SAFETY: as above, the module is live during this call.
        unsafe { raw_initstate(api, m) }
    } else {
        -1
    };
    let builtin = !install && path.is_none() && state == 0;
    let action = ProbeAction {
        module,
        path,
        install,
        install_command,
        builtin,
        options: options.trim().to_owned(),
    };
    PROBE_ACTIONS.with(|a| {
        if let Ok(mut v) = a.try_borrow_mut() {
            v.push(action);
        }
    });
}

/// # Safety
/// Called by libkmod with a live module, the install command line, and the
/// `data` pointer `probe_insert` passed.
unsafe extern "C" fn run_install_trampoline(
    m: *mut kmod_module,
    cmd: *const c_char,
    data: *mut c_void,
) -> c_int {
    let Ok(api) = super::ffi::api() else {
        return -libc::EINVAL;
    };
    // SAFETY: live module and command string owned by libkmod for this call.
    let (module, cmd) = unsafe { (raw_name(api, m), opt_string(cmd).unwrap_or_default()) };
    // SAFETY: `data` is `&mut cb` from `probe_insert`, of exactly this type,
    // and `probe_insert` is blocked in the libkmod call, so this is the only
    // live access to it.
    let cb = unsafe { &mut *data.cast::<&mut dyn FnMut(&str, &str) -> Result<(), Errno>>() };
    match cb(&module, &cmd) {
        Ok(()) => 0,
        Err(e) => -(e as c_int),
    }
}

/// An owned `kmod_list` of module references (`kmod_module_unref_list` on
/// drop). Empty lists are NULL in libkmod.
pub struct ModuleList<'ctx> {
    head: *mut kmod_list,
    api: &'static Api,
    _ctx: PhantomData<&'ctx Context>,
}

impl<'ctx> ModuleList<'ctx> {
    /// # Safety
    /// `head` must be NULL or a list of module references the caller owns
    /// (and gives up), from a context that outlives `'ctx`.
    pub(crate) unsafe fn from_raw(api: &'static Api, head: *mut kmod_list) -> Self {
        ModuleList {
            head,
            api,
            _ctx: PhantomData,
        }
    }

    /// True when the list has no entry.
    pub fn is_empty(&self) -> bool {
        self.head.is_null()
    }

    /// The modules, each with its own new reference (`kmod_module_get_module`).
    pub(crate) fn modules(&self) -> Vec<Module<'ctx>> {
        let mut out = Vec::new();
        let mut cur = self.head;
        while !cur.is_null() {
            // SAFETY: `cur` is a node of the list we own;
            // kmod_module_get_module returns a new reference (ours to
            // unref), kmod_list_next the next node or NULL.
            unsafe {
                if let Some(m) = Module::from_raw(self.api, (self.api.kmod_module_get_module)(cur))
                {
                    out.push(m);
                }
                cur = (self.api.kmod_list_next)(self.head, cur);
            }
        }
        out
    }

    /// The module names, in list order.
    pub fn names(&self) -> Vec<String> {
        self.modules().iter().map(Module::name).collect()
    }
}

impl Drop for ModuleList<'_> {
    fn drop(&mut self) {
        if !self.head.is_null() {
            // SAFETY: we own the list and each of its module references.
            unsafe { (self.api.kmod_module_unref_list)(self.head) };
        }
    }
}
