//! Finds `libferrohsm_pkcs11.so` for programs that load it by path, as real
//! clients do: the CLI (installed by the Debian package, by `make install` or
//! run from `target/`), the tests and the benchmarks.
//!
//! Order: `FERROHSM_MODULE`; beside the executable (and Cargo's profile
//! directories around it); the installation prefix around the executable
//! (`<exe_dir>/../lib/pkcs11/`, `<exe_dir>/../lib/<multiarch>/pkcs11/`); the
//! p11-kit registration (a `*.module` file whose `module:` names this
//! library). A program always takes the module of its own installation
//! before a registered one, so two installations do not mix.
#![forbid(unsafe_code)]

use std::ffi::OsString;
use std::path::{Path, PathBuf};

/// File name of the shared library.
pub const LIBRARY_NAME: &str = "libferrohsm_pkcs11.so";

/// Debian's multiarch tuple of the architecture this was built for (where
/// Debian puts PKCS#11 modules: `/usr/lib/<tuple>/pkcs11/`).
pub fn multiarch_tuple() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "x86_64-linux-gnu",
        "x86" => "i386-linux-gnu",
        "aarch64" => "aarch64-linux-gnu",
        "arm" => "arm-linux-gnueabihf",
        "powerpc64" => "powerpc64le-linux-gnu",
        "riscv64" => "riscv64-linux-gnu",
        "s390x" => "s390x-linux-gnu",
        "loongarch64" => "loongarch64-linux-gnu",
        _ => "unknown-linux-gnu",
    }
}

/// Directory p11-kit resolves a relative `module:` name against (Debian's
/// `p11_module_path`).
pub fn p11kit_module_dir() -> PathBuf {
    PathBuf::from(format!("/usr/lib/{}/pkcs11", multiarch_tuple()))
}

/// The per-user p11-kit module config directory: `$XDG_CONFIG_HOME/pkcs11/modules`,
/// else `~/.config/pkcs11/modules`. A relative `XDG_CONFIG_HOME` is ignored,
/// as the XDG Base Directory specification says.
pub fn p11kit_user_dir(env: &dyn Fn(&str) -> Option<OsString>) -> Option<PathBuf> {
    let var = |k: &str| env(k).filter(|v| !v.is_empty());
    if let Some(x) = var("XDG_CONFIG_HOME").filter(|x| Path::new(x).is_absolute()) {
        return Some(PathBuf::from(x).join("pkcs11/modules"));
    }
    var("HOME").map(|h| PathBuf::from(h).join(".config/pkcs11/modules"))
}

/// Where p11-kit reads module configs, in its order of precedence: the
/// user's, the system administrator's, the packages'.
pub fn p11kit_config_dirs(env: &dyn Fn(&str) -> Option<OsString>) -> Vec<PathBuf> {
    let mut dirs: Vec<PathBuf> = p11kit_user_dir(env).into_iter().collect();
    dirs.push(PathBuf::from("/etc/pkcs11/modules"));
    dirs.push(PathBuf::from("/usr/share/p11-kit/modules"));
    dirs
}

/// A module found, and by which rule (shown by `ferrohsm --version`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Found {
    /// The library to load.
    pub path: PathBuf,
    /// How it was found, for people: "FERROHSM_MODULE", "beside the program",
    /// "installation prefix", "p11-kit config <file>".
    pub how: String,
}

/// The module to load for the program `exe`, looking up the environment with
/// `env` and p11-kit configs in `p11kit_dirs` (see the module doc for the order).
pub fn find_in(
    exe: &Path,
    env: &dyn Fn(&str) -> Option<OsString>,
    p11kit_dirs: &[PathBuf],
) -> Option<Found> {
    if let Some(p) = env("FERROHSM_MODULE").filter(|p| !p.is_empty()) {
        return Some(Found {
            path: PathBuf::from(p),
            how: "FERROHSM_MODULE".into(),
        });
    }
    let found = |path: PathBuf, how: &str| Found {
        path,
        how: how.into(),
    };
    let dir = exe.parent()?;
    if let Some(p) = newest_beside(dir) {
        let how = if p.parent() == Some(dir) {
            "beside the program"
        } else {
            "Cargo target directory of the program"
        };
        return Some(found(p, how));
    }
    if let Some(prefix) = dir.parent() {
        let candidates = [
            prefix.join("lib/pkcs11").join(LIBRARY_NAME),
            prefix
                .join("lib")
                .join(multiarch_tuple())
                .join("pkcs11")
                .join(LIBRARY_NAME),
        ];
        if let Some(p) = candidates.into_iter().find(|p| p.is_file()) {
            return Some(found(p, "installation prefix of the program"));
        }
    }
    p11kit_dirs.iter().find_map(|d| registered_in(d))
}

/// The newest `libferrohsm_pkcs11.so` in `dir` or in the Cargo profile
/// directory around it (`target/<profile>/` and `target/<profile>/deps/`,
/// where Cargo leaves the cdylib of a dependency).
fn newest_beside(dir: &Path) -> Option<PathBuf> {
    let mut dirs = vec![dir.to_path_buf(), dir.join("deps")];
    if dir.file_name().is_some_and(|n| n == "deps") {
        dirs.extend(dir.parent().map(Path::to_path_buf));
    }
    dirs.iter()
        .map(|d| d.join(LIBRARY_NAME))
        .filter_map(|p| Some((std::fs::metadata(&p).ok()?.modified().ok()?, p)))
        .max_by_key(|(t, _)| *t)
        .map(|(_, p)| p)
}

/// The module named by the first `*.module` file (in name order) of the
/// p11-kit config directory `dir` whose `module:` is this library and exists.
fn registered_in(dir: &Path) -> Option<Found> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .ok()?
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "module"))
        .collect();
    files.sort();
    files.into_iter().find_map(|file| {
        let text = std::fs::read_to_string(&file).ok()?;
        let path = module_of(&text)?;
        path.is_file().then(|| Found {
            path,
            how: format!("p11-kit config {}", file.display()),
        })
    })
}

/// The library a p11-kit module config names, if it is this library
/// (a relative name is resolved against p11-kit's module directory).
pub fn module_of(config: &str) -> Option<PathBuf> {
    let value = config.lines().find_map(|line| {
        let (key, value) = line.split_once(':')?;
        (key.trim() == "module").then(|| value.trim())
    })?;
    let path = Path::new(value);
    if path.file_name()? != LIBRARY_NAME {
        return None;
    }
    Some(if path.is_absolute() {
        path.to_path_buf()
    } else {
        p11kit_module_dir().join(path)
    })
}

/// The process environment, as `find_in` takes it.
fn process_env(k: &str) -> Option<OsString> {
    std::env::var_os(k)
}

/// `find_in` for the running executable and the real p11-kit directories.
pub fn find() -> Option<Found> {
    let exe = std::env::current_exe().ok()?;
    find_in(&exe, &process_env, &p11kit_config_dirs(&process_env))
}

/// `find_in` for the program `exe`, with the real environment.
pub fn module_path_for(exe: &Path) -> Option<PathBuf> {
    find_in(exe, &process_env, &p11kit_config_dirs(&process_env)).map(|f| f.path)
}

/// `module_path_for` the running executable.
pub fn module_path() -> Option<PathBuf> {
    find().map(|f| f.path)
}

/// The one message for "no module found": where it looked and what to do.
pub fn not_found_message() -> String {
    let exe = std::env::current_exe().ok();
    let dir = exe.as_deref().and_then(Path::parent);
    let beside = dir.map_or("beside this program".into(), |d| {
        format!("beside this program ({})", d.display())
    });
    let prefix = dir
        .and_then(Path::parent)
        .map_or("<prefix>".into(), |p| p.display().to_string());
    format!(
        "{LIBRARY_NAME} not found: looked at FERROHSM_MODULE (unset), {beside}, \
         {prefix}/lib/pkcs11/, {prefix}/lib/{}/pkcs11/ and the p11-kit module configs \
         ({}); install the package or `make install`, set FERROHSM_MODULE, \
         or build it with `cargo build --release -p ferrohsm-pkcs11`",
        multiarch_tuple(),
        p11kit_config_dirs(&process_env)
            .iter()
            .map(|d| d.display().to_string())
            .collect::<Vec<_>>()
            .join(", ")
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    fn env_of(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<OsString> {
        let pairs: Vec<(String, String)> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |k| {
            pairs
                .iter()
                .find(|(n, _)| n == k)
                .map(|(_, v)| OsString::from(v))
        }
    }

    fn touch(p: &Path) {
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(p, b"").unwrap();
    }

    #[test]
    fn order_env_beside_prefix_multiarch_p11kit() {
        let t = tempfile::tempdir().unwrap();
        let root = t.path();
        let exe = root.join("usr/bin/ferrohsm");
        touch(&exe);
        let conf = root.join("conf");
        let registered = root.join("elsewhere").join(LIBRARY_NAME);
        touch(&registered);
        fs::create_dir_all(&conf).unwrap();
        fs::write(conf.join("other.module"), "module: opensc-pkcs11.so\n").unwrap();
        fs::write(
            conf.join("ferrohsm.module"),
            format!("# comment\nmodule: {}\n", registered.display()),
        )
        .unwrap();
        let dirs = [root.join("missing"), conf.clone()];
        let none = env_of(&[]);

        let f = find_in(&exe, &none, &dirs).unwrap();
        assert_eq!(f.path, registered);
        assert!(f.how.contains("ferrohsm.module"), "{}", f.how);

        let multi = root
            .join("usr/lib")
            .join(multiarch_tuple())
            .join("pkcs11")
            .join(LIBRARY_NAME);
        touch(&multi);
        assert_eq!(find_in(&exe, &none, &dirs).unwrap().path, multi);

        let plain = root.join("usr/lib/pkcs11").join(LIBRARY_NAME);
        touch(&plain);
        assert_eq!(find_in(&exe, &none, &dirs).unwrap().path, plain);

        let beside = root.join("usr/bin").join(LIBRARY_NAME);
        touch(&beside);
        let f = find_in(&exe, &none, &dirs).unwrap();
        assert_eq!((f.path, f.how.as_str()), (beside, "beside the program"));

        let env = env_of(&[("FERROHSM_MODULE", "/x/y.so")]);
        assert_eq!(
            find_in(&exe, &env, &dirs).unwrap().path,
            PathBuf::from("/x/y.so")
        );
        // An empty FERROHSM_MODULE is unset.
        let env = env_of(&[("FERROHSM_MODULE", "")]);
        assert_eq!(
            find_in(&exe, &env, &dirs).unwrap().how,
            "beside the program"
        );
    }

    #[test]
    fn nothing_found_is_none() {
        let t = tempfile::tempdir().unwrap();
        let exe = t.path().join("bin/ferrohsm");
        touch(&exe);
        assert_eq!(find_in(&exe, &env_of(&[]), &[t.path().join("c")]), None);
        // A registration whose file is missing is skipped.
        let conf = t.path().join("c");
        fs::create_dir_all(&conf).unwrap();
        fs::write(
            conf.join("f.module"),
            "module: /nonexistent/libferrohsm_pkcs11.so",
        )
        .unwrap();
        assert_eq!(find_in(&exe, &env_of(&[]), &[conf]), None);
    }

    #[test]
    fn module_lines() {
        assert_eq!(
            module_of("module: libferrohsm_pkcs11.so\n"),
            Some(p11kit_module_dir().join(LIBRARY_NAME))
        );
        assert_eq!(
            module_of("priority: 1\nmodule:/opt/f/libferrohsm_pkcs11.so  \n"),
            Some(PathBuf::from("/opt/f/libferrohsm_pkcs11.so"))
        );
        assert_eq!(module_of("module: libsofthsm2.so\n"), None);
        assert_eq!(module_of("# module: x\n"), None);
    }

    #[test]
    fn user_dir_ignores_relative_xdg_config_home() {
        let e = env_of(&[("HOME", "/h"), ("XDG_CONFIG_HOME", "rel/conf")]);
        assert_eq!(
            p11kit_user_dir(&e),
            Some(PathBuf::from("/h/.config/pkcs11/modules"))
        );
        let e = env_of(&[("HOME", "/h"), ("XDG_CONFIG_HOME", "/c")]);
        assert_eq!(
            p11kit_user_dir(&e),
            Some(PathBuf::from("/c/pkcs11/modules"))
        );
        assert_eq!(p11kit_user_dir(&env_of(&[])), None);
    }
}
