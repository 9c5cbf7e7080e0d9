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
