import { test } from "node:test";
import assert from "node:assert/strict";
import { isUkeyError } from "@ukey/policy";
import { openStore, parsePostgresConnectionString } from "../src/index.js";

// Issue 18, part 3: connection strings that list several hosts, as libpq accepts them.

test("connection strings with several hosts give the servers in order, each as a single-host URL", () => {
  const cases: [string, string, string[]][] = [
    ["URL, a port per host", "postgres://ukey:s3cret@db1:5433,db2:5434/ukey?target_session_attrs=read-write&sslmode=require",
      ["postgres://ukey:s3cret@db1:5433/ukey?sslmode=require", "postgres://ukey:s3cret@db2:5434/ukey?sslmode=require"]],
    ["URL, a host without a port takes 5432", "postgresql://u@db1,db2:6000/d", ["postgresql://u@db1/d", "postgresql://u@db2:6000/d"]],
    ["URL, IPv6 hosts", "postgres://u@[::1]:5433,[fe80::1]/d", ["postgres://u@[::1]:5433/d", "postgres://u@[fe80::1]/d"]],
    ["keywords, one port for all", "host=db1,db2 port=6000 dbname=ukey user=ukey", ["postgres://ukey@db1:6000/ukey", "postgres://ukey@db2:6000/ukey"]],
    ["one host passes unchanged", "postgres://postgres@127.0.0.1:55432/postgres", ["postgres://postgres@127.0.0.1:55432/postgres"]],
  ];
  for (const [name, text, want] of cases) {
    assert.deepEqual(parsePostgresConnectionString(text).targets.map((t) => t.connectionString), want, name);
  }
  const quoted = parsePostgresConnectionString("host=db1,db2 port=5433,5434 dbname=ukey user=ukey password='a b\\'c' target_session_attrs=read-write");
  assert.deepEqual(quoted.targets.map((t) => t.connectionString),
    ["postgres://ukey:a%20b'c@db1:5433/ukey", "postgres://ukey:a%20b'c@db2:5434/ukey"]);
  assert.equal(quoted.hostsLabel, "db1:5433, db2:5434");
  assert.equal(quoted.targetSessionAttrs, "read-write");
  assert.equal(parsePostgresConnectionString("postgres://u@a,b/d").targetSessionAttrs, "any");
  assert.equal(parsePostgresConnectionString("postgres://u@a,b/d?target_session_attrs=primary").targetSessionAttrs, "primary");
});

test("malformed connection strings are refused with DATABASE_URL_INVALID, before any connection, and never echo the password", async () => {
  const cases: [string, string, RegExp][] = [
    ["more ports than hosts", "host=db1,db2 port=1,2,3 dbname=d password=hunter2", /2 hosts but 3 ports/],
    ["fewer ports than hosts", "host=db1,db2,db3 port=1,2 dbname=d", /3 hosts but 2 ports/],
    ["a port that is not a number", "postgres://u:hunter2@db1:5432,db2:fivefour/d", /port "fivefour"/],
    ["a port out of range", "postgres://u@db1:70000,db2/d", /port "70000"/],
    ["an empty host in the list", "postgres://u@db1,,db2/d", /host in the list is empty/],
    ["an unknown target_session_attrs", "postgres://u@db1,db2/d?target_session_attrs=sometimes", /target_session_attrs=sometimes is not supported/],
    ["a standby-only target_session_attrs", "postgres://u@db1,db2/d?target_session_attrs=standby", /target_session_attrs=standby is not supported/],
    ["a read-only target_session_attrs", "host=db1 target_session_attrs=read-only", /target_session_attrs=read-only is not supported/],
    ["target_session_attrs twice", "postgres://u@db1,db2/d?target_session_attrs=any&target_session_attrs=read-write", /more than once/],
    ["an unknown keyword", "host=db1 dbnme=ukey", /keyword dbnme is not supported/],
    ["neither form", "db1:5432/ukey", /neither a postgres:\/\/ URL nor keyword=value/],
  ];
  for (const [name, text, reason] of cases) {
    // openStore with a bad string: refused before any connection is tried (db1 does not resolve here, which would say DATABASE_UNAVAILABLE).
    await assert.rejects(openStore({ databaseUrl: text }), (e: unknown) => {
      assert.ok(isUkeyError(e, "DATABASE_URL_INVALID"), `${name}: ${String(e)}`);
      assert.match(String(e.params.reason), reason, name);
      assert.doesNotMatch(JSON.stringify(e.toProblem()), /hunter2/, name);
      assert.equal(e.kind, "invalid");
      return true;
    }, name);
  }
});

test("several hosts none of which answers is DATABASE_UNAVAILABLE naming each", async () => {
  await assert.rejects(openStore({ databaseUrl: "postgres://postgres@127.0.0.1:1,127.0.0.1:2/none?target_session_attrs=read-write" }), (e: unknown) => {
    assert.ok(isUkeyError(e, "DATABASE_UNAVAILABLE"), String(e));
    assert.match(String(e.params.reason), /127\.0\.0\.1:1: .*; 127\.0\.0\.1:2: /);
    return true;
  });
});
