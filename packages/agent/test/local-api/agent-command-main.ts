// `ukey agent ARGS` as a program of its own, for the tests that run it as a
// separate process (signals, stdout lines), independently of the `ukey` bin.
import { runAgentCommand } from "../../src/local-api/agent-command.js";

process.exitCode = await runAgentCommand(process.argv.slice(2), { stdout: process.stdout, stderr: process.stderr, stdin: process.stdin });
