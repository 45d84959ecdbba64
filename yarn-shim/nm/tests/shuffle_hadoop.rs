//! The shuffle against Hadoop 3.2's own classes, when `WEIR_HADOOP_HOME`
//! names a Hadoop installation (its `share/hadoop/{common,mapreduce}`): the
//! job token is serialized by Hadoop's `Token.write` (as
//! `ShuffleHandler.serializeServiceData` does), map outputs are written by
//! MapReduce's `SpillRecord`, and the request is made and its reply checked
//! the way `Fetcher` does it (`SecureShuffleUtils` hashes, `verifyReply`,
//! `ShuffleHeader.readFields`). Skipped (passes) without `WEIR_HADOOP_HOME`.

use std::path::Path;
use std::process::Command;

use weir_yarn_api::ids::ApplicationId;
use weir_yarn_nm::layout::Layout;
use weir_yarn_nm::shuffle::ShuffleService;

const FETCHER: &str = r#"
package org.apache.hadoop.mapreduce.task.reduce; // ShuffleHeader's fields are package-private

import java.io.*;
import java.net.*;
import javax.crypto.SecretKey;
import org.apache.hadoop.fs.Path;
import org.apache.hadoop.io.*;
import org.apache.hadoop.mapred.*;
import org.apache.hadoop.mapreduce.security.SecureShuffleUtils;
import org.apache.hadoop.mapreduce.security.token.*;
import org.apache.hadoop.security.token.Token;

public class HadoopFetcher {
  static byte expected(int map, int part, int i) { return (byte) (map * 31 + part * 7 + i); }
  static int length(int part) { return 1000 + part * 100; }

  public static void main(String[] a) throws Exception {
    switch (a[0]) {
      case "token": {
        JobTokenIdentifier id = new JobTokenIdentifier(new Text(a[1]));
        Token<JobTokenIdentifier> t = new Token<>(id.getBytes(), a[2].getBytes("UTF-8"), id.getKind(), new Text(""));
        DataOutputBuffer dob = new DataOutputBuffer();
        t.write(dob);
        try (FileOutputStream o = new FileOutputStream(a[3])) { o.write(dob.getData(), 0, dob.getLength()); }
        break;
      }
      case "output": {
        int map = Integer.parseInt(a[2]), parts = Integer.parseInt(a[3]);
        File dir = new File(a[1]);
        dir.mkdirs();
        SpillRecord spill = new SpillRecord(parts);
        try (FileOutputStream o = new FileOutputStream(new File(dir, "file.out"))) {
          long off = 0;
          for (int p = 0; p < parts; p++) {
            byte[] b = new byte[length(p)];
            for (int i = 0; i < b.length; i++) b[i] = expected(map, p, i);
            o.write(b);
            spill.putIndex(new IndexRecord(off, b.length * 2L, b.length), p);
            off += b.length;
          }
        }
        spill.writeToFile(new Path(new File(dir, "file.out.index").getAbsolutePath()), new JobConf());
        break;
      }
      case "fetch": {
        URL url = new URL("http://127.0.0.1:" + a[1] + "/mapOutput?job=" + a[2] + "&reduce=" + a[3] + "&map=" + a[5]);
        SecretKey key = JobTokenSecretManager.createSecretKey(a[4].getBytes("UTF-8"));
        String encHash = SecureShuffleUtils.hashFromString(SecureShuffleUtils.buildMsgFrom(url), key);
        HttpURLConnection c = (HttpURLConnection) url.openConnection();
        c.addRequestProperty(SecureShuffleUtils.HTTP_HEADER_URL_HASH, encHash);
        c.addRequestProperty(ShuffleHeader.HTTP_HEADER_NAME, ShuffleHeader.DEFAULT_HTTP_HEADER_NAME);
        c.addRequestProperty(ShuffleHeader.HTTP_HEADER_VERSION, ShuffleHeader.DEFAULT_HTTP_HEADER_VERSION);
        int rc = c.getResponseCode();
        if (rc != 200) { System.out.println("status " + rc); return; }
        if (!ShuffleHeader.DEFAULT_HTTP_HEADER_NAME.equals(c.getHeaderField(ShuffleHeader.HTTP_HEADER_NAME))
            || !ShuffleHeader.DEFAULT_HTTP_HEADER_VERSION.equals(c.getHeaderField(ShuffleHeader.HTTP_HEADER_VERSION))) {
          throw new IOException("Incompatible shuffle response version");
        }
        String reply = c.getHeaderField(SecureShuffleUtils.HTTP_HEADER_REPLY_URL_HASH);
        if (reply == null) throw new IOException("security validation of TT Map output failed");
        SecureShuffleUtils.verifyReply(reply, encHash, key);
        DataInputStream in = new DataInputStream(c.getInputStream());
        int reduce = Integer.parseInt(a[3]);
        for (String m : a[5].split(",")) {
          ShuffleHeader h = new ShuffleHeader();
          h.readFields(in);
          byte[] b = new byte[(int) h.compressedLength];
          in.readFully(b);
          int map = Integer.parseInt(h.mapId.substring(h.mapId.length() - 8, h.mapId.length() - 2));
          boolean ok = h.mapId.equals(m) && h.forReduce == reduce && b.length == length(reduce) && h.uncompressedLength == 2L * b.length;
          for (int i = 0; ok && i < b.length; i++) ok = b[i] == expected(map, reduce, i);
          System.out.println((ok ? "ok " : "bad ") + h.mapId + " " + h.compressedLength + " " + h.uncompressedLength + " " + h.forReduce);
        }
        if (in.read() != -1) System.out.println("trailing bytes");
        break;
      }
      default: throw new IllegalArgumentException(a[0]);
    }
  }
}
"#;

fn run(classpath: &str, args: &[&str]) -> String {
    let out = Command::new("java").args(["-cp", classpath, "org.apache.hadoop.mapreduce.task.reduce.HadoopFetcher"]).args(args).output().unwrap();
    assert!(out.status.success(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hadoops_own_fetcher_code_reads_our_shuffle() {
    let Some(home) = std::env::var_os("WEIR_HADOOP_HOME") else {
        eprintln!("WEIR_HADOOP_HOME is not set: skipped");
        return;
    };
    let h = Path::new(&home).display().to_string();
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src/org/apache/hadoop/mapreduce/task/reduce");
    std::fs::create_dir_all(&src).unwrap();
    std::fs::write(src.join("HadoopFetcher.java"), FETCHER).unwrap();
    let hadoop = format!("{h}/share/hadoop/common/*:{h}/share/hadoop/common/lib/*:{h}/share/hadoop/mapreduce/*");
    let classes = tmp.path().join("classes");
    let javac = Command::new("javac").args(["-nowarn", "-cp", &hadoop, "-d"]).arg(&classes).arg(src.join("HadoopFetcher.java")).output().unwrap();
    assert!(javac.status.success(), "{}", String::from_utf8_lossy(&javac.stderr));
    let cp = format!("{}:{hadoop}", classes.display());

    let app = ApplicationId { cluster_timestamp: 1700000000000, id: 1 };
    let job = "job_1700000000000_0001";
    let layout = Layout::new(tmp.path().join("nm"));
    let token_file = tmp.path().join("token");
    run(&cp, &["token", job, "the job's shuffle secret", token_file.to_str().unwrap()]);
    let maps = ["attempt_1700000000000_0001_m_000000_0", "attempt_1700000000000_0001_m_000001_0"];
    for (n, map) in maps.iter().enumerate() {
        let dir = layout.map_output_dir("alice", app, map).unwrap();
        run(&cp, &["output", dir.to_str().unwrap(), &n.to_string(), "3"]);
    }
    let shuffle = ShuffleService::start("127.0.0.1:0".parse().unwrap(), layout).await.unwrap();
    shuffle.register(app, "alice", &std::fs::read(&token_file).unwrap()).unwrap();
    let port = shuffle.port().to_string();

    let joined = maps.join(",");
    let fetch = |secret: &'static str| {
        let (cp, port, joined) = (cp.clone(), port.clone(), joined.clone());
        tokio::task::spawn_blocking(move || run(&cp, &["fetch", &port, job, "1", secret, &joined]))
    };
    assert_eq!(
        fetch("the job's shuffle secret").await.unwrap(),
        format!("ok {} 1100 2200 1\nok {} 1100 2200 1\n", maps[0], maps[1])
    );
    assert_eq!(fetch("another secret").await.unwrap(), "status 401\n");
}
