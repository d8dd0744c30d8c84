//! Token objects created by several threads at once (the module writes them
//! to the store with the token lock let go, so their flushes are shared),
//! and by another process meanwhile (which makes this process reload its
//! cache while its own writes are in flight). Every creation returns a
//! handle to its own object, each object is found exactly once, nothing is
//! lost, and a new process sees the same set.

use std::collections::{BTreeMap, BTreeSet};
use std::process::Stdio;
use std::sync::Arc;

use cryptoki::context::{CInitializeArgs, CInitializeFlags, Pkcs11};
use cryptoki::object::{Attribute, AttributeType, ObjectClass, ObjectHandle};
use cryptoki::session::{Session, UserType};
use cryptoki::slot::Slot;
use ferrohsm_tests::child::{child_command, role};
use ferrohsm_tests::p11::{pin, ready_token, slot_of};
use ferrohsm_tests::{TestEnv, USER_PIN, module_path};

const TOKEN: &str = "concurrent";
const THREADS: usize = 4;
const PER_THREAD: usize = 40;

fn data_object(label: &str, private: bool) -> Vec<Attribute> {
    vec![
        Attribute::Class(ObjectClass::DATA),
        Attribute::Token(true),
        Attribute::Private(private),
        Attribute::Label(label.as_bytes().to_vec()),
        Attribute::Value(label.as_bytes().to_vec()),
    ]
}

fn label_of(s: &Session, h: ObjectHandle) -> String {
    match s
        .get_attributes(h, &[AttributeType::Label])
        .expect("C_GetAttributeValue")
        .as_slice()
    {
        [Attribute::Label(l)] => String::from_utf8(l.clone()).expect("UTF-8 label"),
        other => panic!("label: {other:?}"),
    }
}

/// Labels of the token's data objects, with how often each was found.
fn found(s: &Session, prefix: &str) -> BTreeMap<String, usize> {
    let mut seen = BTreeMap::new();
    for h in s
        .find_objects(&[Attribute::Class(ObjectClass::DATA)])
        .expect("C_FindObjects")
    {
        let l = label_of(s, h);
        if l.starts_with(prefix) {
            *seen.entry(l).or_insert(0) += 1;
        }
    }
    seen
}

/// `THREADS` threads, each in its own session, create `PER_THREAD` token
/// objects (private and public alternately); returns label → handle.
fn create_in_threads(p: &Pkcs11, prefix: &str) -> BTreeMap<String, ObjectHandle> {
    let slot = slot_of(p, TOKEN);
    let p = Arc::new(p.clone());
    let workers: Vec<_> = (0..THREADS)
        .map(|t| {
            let p = p.clone();
            let prefix = prefix.to_string();
            std::thread::spawn(move || {
                let s = p.open_rw_session(slot).expect("C_OpenSession");
                let mut made = Vec::new();
                for i in 0..PER_THREAD {
                    let label = format!("{prefix}-{t}-{i}");
                    let h = s
                        .create_object(&data_object(&label, i % 2 == 0))
                        .expect("C_CreateObject");
                    // The handle is this object's, at once and in this session.
                    assert_eq!(label_of(&s, h), label, "handle {h} of {label}");
                    made.push((label, h));
                }
                made
            })
        })
        .collect();
    let mut all = BTreeMap::new();
    for w in workers {
        for (label, h) in w.join().expect("worker thread") {
            assert!(all.insert(label, h).is_none(), "label made twice");
        }
    }
    all
}

fn check_all_once(s: &Session, prefix: &str, want: &BTreeSet<String>) {
    let seen = found(s, prefix);
    let twice: Vec<_> = seen.iter().filter(|(_, n)| **n > 1).collect();
    assert!(twice.is_empty(), "objects found more than once: {twice:?}");
    let got: BTreeSet<String> = seen.into_keys().collect();
    assert_eq!(
        got.len(),
        want.len(),
        "missing: {:?}",
        want.difference(&got).take(5).collect::<Vec<_>>()
    );
    assert_eq!(&got, want);
}

/// The module loaded, the test token made, and a user session on it.
fn logged_in_token(env: &TestEnv) -> (Pkcs11, Slot, Session) {
    let p = env.load();
    let slot = ready_token(&p, TOKEN);
    let s = p.open_rw_session(slot).expect("C_OpenSession");
    s.login(UserType::User, Some(&pin(USER_PIN)))
        .expect("C_Login");
    (p, slot, s)
}

#[test]
fn threads_create_token_objects_at_once() {
    let env = TestEnv::new();
    let (p, _slot, s) = logged_in_token(&env);
    let made = create_in_threads(&p, "t");
    let handles: BTreeSet<u64> = made.values().map(|h| h.handle()).collect();
    assert_eq!(handles.len(), THREADS * PER_THREAD, "a handle given twice");
    let want: BTreeSet<String> = made.keys().cloned().collect();
    check_all_once(&s, "t-", &want);
    for (label, h) in &made {
        assert_eq!(&label_of(&s, *h), label);
    }

    // Logout hides the private half; login brings back all of them.
    s.logout().expect("C_Logout");
    assert_eq!(found(&s, "t-").len(), THREADS * PER_THREAD / 2);
    s.login(UserType::User, Some(&pin(USER_PIN)))
        .expect("C_Login");
    check_all_once(&s, "t-", &want);
    drop(s);
    p.finalize().expect("C_Finalize");

    // A new module instance reads the same set from the store.
    let p = env.load();
    let s = p
        .open_rw_session(slot_of(&p, TOKEN))
        .expect("C_OpenSession");
    s.login(UserType::User, Some(&pin(USER_PIN)))
        .expect("C_Login");
    check_all_once(&s, "t-", &want);
}

/// The other process's role (its environment names the parent's data
/// directory): creates the public objects it is told to.
fn other_process_writes() {
    let p = Pkcs11::new(module_path()).expect("load module");
    p.initialize(CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK))
        .expect("C_Initialize");
    let s = p
        .open_rw_session(slot_of(&p, TOKEN))
        .expect("C_OpenSession");
    let mut line = String::new();
    let n: usize = {
        std::io::stdin().read_line(&mut line).expect("count");
        line.trim().parse().expect("count")
    };
    for i in 0..n {
        s.create_object(&data_object(&format!("o-{i}"), false))
            .expect("C_CreateObject in the other process");
    }
}

#[test]
fn threads_and_another_process_write_at_once() {
    const TEST: &str = "threads_and_another_process_write_at_once";
    if role().is_some() {
        other_process_writes();
        return;
    }
    let env = TestEnv::new();
    let (p, slot, s) = logged_in_token(&env);
    let other_count = 120;
    let mut other = child_command(&env, TEST, "writer")
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .expect("spawn the other process");
    {
        use std::io::Write;
        let mut stdin = other.stdin.take().expect("stdin");
        writeln!(stdin, "{other_count}").expect("tell the count");
    }
    // Finds in this process during the writes make it reload (the other
    // process moves the generation) while its own writes are in flight.
    let finder = {
        let p = p.clone();
        std::thread::spawn(move || {
            let s = p.open_ro_session(slot).expect("C_OpenSession");
            for _ in 0..200 {
                let _ = s.find_objects(&[Attribute::Class(ObjectClass::DATA)]);
            }
        })
    };
    let made = create_in_threads(&p, "m");
    finder.join().expect("finder thread");
    assert!(
        other.wait().expect("wait").success(),
        "the other process failed"
    );

    let want: BTreeSet<String> = made.keys().cloned().collect();
    check_all_once(&s, "m-", &want);
    let theirs: BTreeSet<String> = (0..other_count).map(|i| format!("o-{i}")).collect();
    check_all_once(&s, "o-", &theirs);
    for (label, h) in &made {
        assert_eq!(&label_of(&s, *h), label, "handle {h}");
    }
}

/// Creations racing a logout: each creation either fails with a PKCS#11
/// error (no crash, no hang) or returns a handle, and every object whose
/// creation returned `CKR_OK` is on the token after the next login, once.
#[test]
fn creations_racing_a_logout_lose_nothing_acknowledged() {
    let env = TestEnv::new();
    let (p, slot, s) = logged_in_token(&env);
    let p = Arc::new(p);
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let workers: Vec<_> = (0..THREADS)
        .map(|t| {
            let (p, stop) = (p.clone(), stop.clone());
            std::thread::spawn(move || {
                let s = p.open_rw_session(slot).expect("C_OpenSession");
                let mut ok = Vec::new();
                // Until the logouts are over, so that they happen mid-write.
                for i in 0.. {
                    if stop.load(std::sync::atomic::Ordering::Relaxed) {
                        break;
                    }
                    let label = format!("r-{t}-{i}");
                    match s.create_object(&data_object(&label, true)) {
                        Ok(_) => ok.push(label),
                        Err(cryptoki::error::Error::Pkcs11(rv, _)) => assert!(
                            matches!(rv, cryptoki::error::RvError::UserNotLoggedIn),
                            "{label}: unexpected {rv:?}"
                        ),
                        Err(e) => panic!("{label}: {e}"),
                    }
                }
                ok
            })
        })
        .collect();
    // Log out and in again a few times while they write.
    for _ in 0..5 {
        std::thread::sleep(std::time::Duration::from_millis(15));
        s.logout().expect("C_Logout");
        std::thread::sleep(std::time::Duration::from_millis(5));
        s.login(UserType::User, Some(&pin(USER_PIN)))
            .expect("C_Login");
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let mut acknowledged = BTreeSet::new();
    for w in workers {
        acknowledged.extend(w.join().expect("worker thread"));
    }
    let seen = found(&s, "r-");
    assert!(seen.values().all(|n| *n == 1), "found twice: {seen:?}");
    let missing: Vec<_> = acknowledged
        .iter()
        .filter(|l| !seen.contains_key(*l))
        .collect();
    assert!(missing.is_empty(), "acknowledged but missing: {missing:?}");
}
