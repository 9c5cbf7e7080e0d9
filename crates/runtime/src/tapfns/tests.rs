//! Tests of the context tapset helpers against the outputs stap's tapsets define.

use super::*;

#[test]
fn bytes_to_string_matches_stap_proc_mem_stp() {
    // proc_mem.stp: "%5d" below 1024, then _stp_number_to_string_postfix.
    assert_eq!(bytes_to_string(0), "    0");
    assert_eq!(bytes_to_string(1023), " 1023");
    assert_eq!(bytes_to_string(-5), "   -5");
    assert_eq!(bytes_to_string(1024), "1.00K");
    // 1536 = 1K + 512: 512 * 100 / 1024 = 50.
    assert_eq!(bytes_to_string(1536), "1.50K");
    // 10K + 1000 bytes: 1000 * 10 / 1024 = 9.
    assert_eq!(bytes_to_string(10 * 1024 + 1000), "10.9K");
    assert_eq!(bytes_to_string(100 * 1024), " 100K");
    assert_eq!(bytes_to_string(1023 * 1024), "1023K");
    assert_eq!(bytes_to_string(1024 * 1024), "1.00M");
    assert_eq!(bytes_to_string(5 * 1024 * 1024 * 1024), "5.00G");
    assert_eq!(bytes_to_string(12_000 * 1024 * 1024 * 1024), "12000G");
}

#[test]
fn signal_str_matches_stap_signal_stp() {
    assert_eq!(signal_str(1), "HUP");
    assert_eq!(signal_str(9), "KILL");
    assert_eq!(signal_str(29), "IO/POLL");
    assert_eq!(signal_str(31), "SYS");
    assert_eq!(signal_str(32), "RTMIN");
    assert_eq!(signal_str(35), "RTMIN+3");
    assert_eq!(signal_str(64), "RTMIN+32");
    assert_eq!(signal_str(0), "");
    assert_eq!(signal_str(65), "");
    assert_eq!(signal_str(-1), "");
}

#[test]
fn cmdline_args_follow_stap_context_stp() {
    let raw = b"/bin/prog\0-a\0\0last\0";
    assert_eq!(cmdline_args(raw, 0, -1, " "), "/bin/prog -a \"\" last");
    assert_eq!(cmdline_args(raw, 1, 1, ""), "-a");
    assert_eq!(cmdline_args(raw, 1, 3, ","), "-a,\"\",last");
    // The first argument shown is never quoted, even when empty.
    assert_eq!(cmdline_args(raw, 2, 2, ""), "");
    assert_eq!(cmdline_args(raw, 9, -1, " "), "");
    assert_eq!(cmdline_args(b"", 0, -1, " "), "");
}

#[test]
fn env_var_takes_the_first_match_after_its_first_equals() {
    let raw = b"A=1\0PATH=/bin:/usr/bin\0X=a=b\0A=2\0";
    assert_eq!(env_var(raw, "A"), "1");
    assert_eq!(env_var(raw, "X"), "a=b");
    assert_eq!(env_var(raw, "PATH"), "/bin:/usr/bin");
    assert_eq!(env_var(raw, "NOPE"), "");
    assert_eq!(env_var(raw, ""), "");
}

#[test]
fn statm_and_mem_string() {
    let m = parse_statm("2500 300 200 5 0 150 0\n").unwrap();
    assert_eq!(
        m,
        Statm {
            size: 2500,
            rss: 300,
            shr: 200,
            txt: 5,
            data: 150
        }
    );
    // 2500 pages = 10000K = 9.76M; 300 pages = 1200K, past 1023K so 1.17M; 5 pages
    // = 20K.
    assert_eq!(
        mem_string(&m),
        "size: 9.76M, rss: 1.17M, shr:  800K, txt: 20.0K, data:  600K"
    );
    assert!(parse_statm("1 2").is_none());
}

#[test]
fn proc_text_parsers() {
    let status = "Name:\tx\nUid:\t1000\t1001\t1000\t1000\nGid:\t50\t51\t50\t50\n";
    assert_eq!(parse_ids(status, "Uid:"), Some((1000, 1001)));
    assert_eq!(parse_ids(status, "Gid:"), Some((50, 51)));
    assert_eq!(parse_ngroups(status), None);
    assert_eq!(parse_ngroups("Groups:\t4 24 27 \n"), Some(3));
    assert_eq!(parse_ngroups("Groups:\n"), Some(0));
    let stat = "42 (a) b (c)) S 1 40 30 0 -1";
    assert_eq!(parse_pgrp_sid(stat), Some((40, 30)));
    assert_eq!(
        loadavg("0.10 0.25 1.00 1/200 99\n").as_deref(),
        Some("0.10 0.25 1.00\n")
    );
    assert_eq!(count_cpus("0-3,5\n"), Some(5));
    assert_eq!(count_cpus("0"), Some(1));
}

#[test]
fn wide_strings_decode_like_stap() {
    let u16s: Vec<u8> = "hé€"
        .encode_utf16()
        .chain([0xD83D, 0xDE00, 0, 0x41])
        .flat_map(|u| u.to_le_bytes())
        .collect();
    assert_eq!(decode_wide(&u16s, 2, 512), Ok("hé€😀".to_string()));
    assert_eq!(decode_wide(&u16s, 2, 3), Ok("hé".to_string()));
    let u32s: Vec<u8> = ['a', '€', '\0', 'b']
        .iter()
        .flat_map(|c| (*c as u32).to_le_bytes())
        .collect();
    assert_eq!(decode_wide(&u32s, 4, 512), Ok("a€".to_string()));
    let bad: Vec<u8> = [0x11_0000u32]
        .iter()
        .flat_map(|c| c.to_le_bytes())
        .collect();
    assert_eq!(decode_wide(&bad, 4, 512), Err(0x11_0000));
}

#[test]
fn probe_types() {
    assert_eq!(probe_type("begin"), "begin_end");
    assert_eq!(probe_type("timer.ms(100)"), "hrtimer");
    assert_eq!(probe_type("timer.profile"), "profile_timer");
    assert_eq!(probe_type("timer.hz(10)"), "hrtimer");
    assert_eq!(probe_type("timer.jiffies(5)"), "timer");
    assert_eq!(probe_type("process(\"/t\").function(\"f\")"), "uprobe");
    assert_eq!(
        probe_type("process(\"/t\").function(\"f\").return"),
        "uretprobe"
    );
    assert_eq!(probe_type("process(\"/t\").syscall"), "utrace_syscall");
    assert_eq!(probe_type("process(\"/t\").begin"), "utrace");
}

#[test]
fn refusals_name_the_function_and_why() {
    assert!(refusal("set_kernel_long")
        .unwrap()
        .contains("never writes its target"));
    assert!(refusal("set_user_int").unwrap().contains("never writes"));
    assert!(refusal("set_int_arg")
        .unwrap()
        .contains("writes target registers"));
    assert!(refusal("set_returnval").unwrap().contains("never writes"));
    assert!(refusal("task_current")
        .unwrap()
        .contains("needs a Linux kernel target"));
    assert!(refusal("inode_path").unwrap().starts_with("inode_path()"));
    assert!(refusal("jiffies").unwrap().contains("not available"));
    assert!(refusal("uid").is_none());
    for n in NAMES {
        assert_eq!(name_of(signature(n).unwrap().0), *n);
    }
}

#[test]
fn proc_cache_reads_afresh_and_remembers_the_last_copy() {
    let mut child = std::process::Command::new("sleep")
        .arg("30")
        .spawn()
        .expect("sleep runs");
    let pid = child.id();
    let mut cache = ProcCache::default();
    // The child may not have executed `sleep` yet: wait until /proc shows it.
    let mut args = String::new();
    for _ in 0..200 {
        args = cmdline_args(cache.cmdline(pid, "sleep").unwrap(), 0, -1, " ");
        if args == "sleep 30" {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    assert_eq!(args, "sleep 30");
    let uid_before = parse_ids(&cache.text(pid, "sleep", ProcFile::Status).unwrap(), "Uid:");
    assert!(uid_before.is_some());
    let _ = child.kill();
    let _ = child.wait();
    assert!(read_proc(pid, "cmdline").is_err(), "the child is gone");
    assert_eq!(
        cmdline_args(cache.cmdline(pid, "sleep").unwrap(), 1, 1, ""),
        "30"
    );
    assert_eq!(
        parse_ids(&cache.text(pid, "sleep", ProcFile::Status).unwrap(), "Uid:"),
        uid_before
    );
    // Never read while the process lived: nothing to give.
    assert!(cache.text(pid, "sleep", ProcFile::Stat).is_err());
    // Another name under that pid is another program: nothing remembered for it.
    let e = cache.cmdline(pid, "other").unwrap_err();
    assert!(e.contains("the process has exited"), "{e}");
    assert!(cache.environ(pid, "sleep").is_err());
}

/// Runs a handler whose `user_string_utf16` call captured `field`.
fn scripts_run(src: &str, field: &[u8]) -> (String, String) {
    scripts::run(src, "user_string_utf16", &[Ok(field)])
}

// ----- Scripts run by the runtime: wide strings from a capture, begin-probe context.

mod scripts {
    use std::cell::RefCell;
    use std::collections::BTreeMap;
    use std::io::Write;
    use std::rc::Rc;

    use capture_plan::{Decode, FieldStatus, Record, SiteBinding, SiteId};
    use script_syntax::ast::{Expr, ExprKind, Item, StmtKind};
    use script_syntax::SourceMap;

    use crate::{Flow, Runtime, RuntimeOptions};

    #[derive(Clone, Default)]
    struct Buf(Rc<RefCell<Vec<u8>>>);

    impl Write for Buf {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.borrow_mut().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    /// The id of the first call of `name` in the probe bodies' expression statements.
    fn call_id(script: &script_syntax::ast::Script, name: &str) -> u32 {
        fn find(e: &Expr, name: &str) -> Option<u32> {
            match &e.kind {
                ExprKind::Call { name: n, .. } if n == name => Some(e.id.0),
                ExprKind::Call { args, .. } => args.iter().find_map(|a| find(a, name)),
                _ => None,
            }
        }
        script
            .items
            .iter()
            .filter_map(|i| match i {
                Item::Probe(p) => Some(p),
                _ => None,
            })
            .flat_map(|p| p.body.stmts.iter())
            .find_map(|s| match &s.kind {
                StmtKind::Expr(e) => find(e, name),
                _ => None,
            })
            .expect("call in the script")
    }

    /// Runs `src`'s begin probes, then its handler on each record whose fields are
    /// the capture of the first call of `call` (decoded as raw bytes): (stdout, stderr).
    pub(super) fn run(src: &str, call: &str, fields: &[Result<&[u8], u64>]) -> (String, String) {
        run_decoded(src, call, Decode::Bytes { field: 0 }, fields)
    }

    /// [`run`] with the capture decoded by `decode`.
    fn run_decoded(
        src: &str,
        call: &str,
        decode: Decode,
        fields: &[Result<&[u8], u64>],
    ) -> (String, String) {
        let mut sm = SourceMap::default();
        let f = sm.add("<input>", src);
        let (script, diags) = script_syntax::parse(&sm, f, &[]);
        assert!(diags.is_empty(), "{diags:?}");
        let mut bindings = Vec::new();
        if !call.is_empty() {
            let id = call_id(&script, call);
            bindings.push(SiteBinding {
                site: SiteId(0),
                probe: 0,
                pp: "process(\"/tmp/a.out\").function(\"f\")".into(),
                function: "f".into(),
                captures: [(id, decode)].into_iter().collect::<BTreeMap<_, _>>(),
                ..SiteBinding::default()
            });
        }
        let (out, err) = (Buf::default(), Buf::default());
        let mut rt = Runtime::new(
            &script,
            &sm,
            bindings,
            RuntimeOptions::default(),
            Box::new(out.clone()),
        )
        .unwrap_or_else(|d| panic!("{d:?}"));
        rt.set_stderr(Box::new(err.clone()));
        if call.is_empty() {
            assert_eq!(rt.run_probe(0), Flow::Continue);
        }
        for field in fields {
            // A pid above Linux's pid_max: no such process in /proc.
            let mut r = Record::new(SiteId(0), 999_999_999, 999_999_999, 1, 0x401000);
            match field {
                Ok(b) => {
                    r.fields.push(FieldStatus::Ok {
                        offset: 0,
                        len: b.len() as u32,
                    });
                    r.data.extend_from_slice(b);
                }
                Err(a) => r.fields.push(FieldStatus::Fault { addr: *a }),
            }
            rt.handle(&r);
        }
        rt.finish();
        let text = |b: &Buf| String::from_utf8_lossy(&b.0.borrow()).into_owned();
        (text(&out), text(&err))
    }

    fn utf16(s: &str) -> Vec<u8> {
        s.encode_utf16()
            .chain([0])
            .flat_map(|u| u.to_le_bytes())
            .collect()
    }

    #[test]
    fn utf16_capture_decodes_and_faults_in_stap_words() {
        let src = "probe process(\"a.out\").function(\"f\") { println(user_string_utf16($p)) }";
        let ok = utf16("h\u{e9}\u{20ac}!");
        let (o, e) = run(src, "user_string_utf16", &[Ok(&ok)]);
        assert_eq!((o.as_str(), e.as_str()), ("h\u{e9}\u{20ac}!\n", ""));
        let (o, e) = run(src, "user_string_utf16", &[Err(0x1000)]);
        assert_eq!(o, "");
        assert!(
            e.starts_with("ERROR: user string copy fault at 0x1000 [man error::fault]"),
            "{e}"
        );
        // A lone low surrogate is no character: stap's conversion error.
        let (_, e) = run(src, "user_string_utf16", &[Ok(&[0x00, 0xDC, 0, 0])]);
        assert!(
            e.starts_with("ERROR: invalid UTF-16 character U+DC00"),
            "{e}"
        );
    }

    #[test]
    fn warn_reads_warn_in_stap_words_and_give_zero() {
        let int = Decode::Int {
            field: 0,
            size: 8,
            signed: true,
        };
        let src = "probe process(\"a.out\").function(\"f\") { println(user_long_warn($p)) }";
        let (o, e) = run_decoded(
            src,
            "user_long_warn",
            int.clone(),
            &[Err(0x10), Ok(&[7, 0, 0, 0, 0, 0, 0, 0])],
        );
        assert_eq!(o, "0\n7\n");
        assert_eq!(
            e,
            "WARNING: user long copy fault 0x0000000000000010 [man error::fault]\n"
        );
        let src = "probe process(\"a.out\").function(\"f\") { println(user_char_warn($p)) }";
        let (_, e) = run_decoded(src, "user_char_warn", int.clone(), &[Err(0x20)]);
        assert_eq!(
            e,
            "WARNING: user char copy fault at 0x0000000000000020 [man error::fault]\n"
        );
        // The _error forms raise stap's error instead.
        let src = "probe process(\"a.out\").function(\"f\") { println(user_int_error($p)) }";
        let (o, e) = run_decoded(src, "user_int_error", int, &[Err(0x30)]);
        assert_eq!(o, "");
        assert!(
            e.starts_with("ERROR: read fault [man error::fault] at 0x0000000000000030"),
            "{e}"
        );
    }

    #[test]
    fn wide_string_fallbacks() {
        let src =
            "probe process(\"a.out\").function(\"f\") { println(user_string2_utf32($p, \"alt\")) }";
        let (o, e) = run(
            src,
            "user_string2_utf32",
            &[Err(8), Ok(&[0x41, 0, 0, 0, 0, 0, 0, 0])],
        );
        assert_eq!((o.as_str(), e.as_str()), ("alt\nA\n", ""));
        let src =
            "probe process(\"a.out\").function(\"f\") { println(kernel_string_utf16($p, \"k\")) }";
        let (o, e) = run(src, "kernel_string_utf16", &[Err(8)]);
        assert_eq!((o.as_str(), e.as_str()), ("k\n", ""));
    }

    #[test]
    fn begin_probes_describe_snaptap_itself() {
        // The test process's own ids, from the `id` command rather than /proc.
        let id = |flag: &str| -> String {
            let o = std::process::Command::new("id").arg(flag).output().unwrap();
            String::from_utf8_lossy(&o.stdout).trim().to_string()
        };
        let src = "probe begin { printf(\"%d %d %d %s|%s|%s|%d\\n\", uid(), euid(), gid(), bytes_to_string(2048), signal_str(9), probe_type(), mem_page_size()) }";
        let (o, e) = run(src, "", &[]);
        assert_eq!(e, "");
        assert_eq!(
            o,
            format!(
                "{} {} {} 2.00K|KILL|begin_end|4096\n",
                id("-ru"),
                id("-u"),
                id("-rg")
            )
        );
        let me = std::fs::read_to_string("/proc/self/comm").unwrap();
        let src = "probe begin { printf(\"[%s][%s]\\n\", pid2execname(stp_pid()), pid2execname(999999999)) }";
        let (o, e) = run(src, "", &[]);
        assert_eq!(e, "");
        assert_eq!(o, format!("[{}][]\n", me.trim_end()));
        let src = "probe begin { println(cmdline_arg(0) != \"\", \" \", proc_mem_size() > 0, \" \", proc_mem_size(999999999), \" \", proc_mem_string(999999999)) }";
        let (o, _) = run(src, "", &[]);
        assert_eq!(
            o,
            "1 1 0 size:     0, rss:     0, shr:     0, txt:     0, data:     0\n"
        );
    }
}

#[test]
fn a_process_gone_before_its_handler_is_an_error_not_a_value() {
    let src = "probe process(\"a.out\").function(\"f\") { println(user_string_utf16($p)); println(proc_mem_size_pid(pid())); println(proc_mem_size()) }";
    let ok: Vec<u8> = vec![0x41, 0, 0, 0];
    let (o, e) = scripts_run(src, &ok);
    assert_eq!(o, "A\n0\n");
    assert!(
        e.starts_with("ERROR: proc_mem_size(): cannot read /proc/999999999/statm (the process has exited); snaptap reads it when the handler runs, not at the probe"),
        "{e}"
    );
    let src = "probe process(\"a.out\").function(\"f\") { println(user_string_utf16($p)); println(uid()) }";
    let (_, e) = scripts_run(src, &ok);
    assert!(
        e.starts_with("ERROR: uid(): cannot read /proc/999999999/status"),
        "{e}"
    );
}
