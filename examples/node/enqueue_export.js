// Enqueue a contact export and follow it, from Node.js: the task goes by name over Celery's
// message protocol (docs/contract.md §1), with npm's celery-node. Nothing of the worker is
// needed, only the broker's URL.
//
//   CELERY_BROKER_URL=redis://localhost:6379/0 node enqueue_export.js \
//       --status active --field email_address --field first_name --job-id crm-sync-1
//
// Progress goes to stderr, one line per change; the result dict to stdout, as JSON.
// Exit codes, as examples/enqueue_export.py: 0 stored, 1 the export failed, 5 still running
// after --timeout seconds (the export goes on).
"use strict";

const { parseArgs } = require("node:util");
const celery = require("celery-node");

const EXPORT_TASK = "contact_exports.export";
// Without a queue celery-node sends to the Redis list "celery", which the workers never read.
const QUEUE = "contact_exports";
const DEFAULT_REDIS_URL = "redis://localhost:6379/0";
const POLL_MS = 200;

function exportKwargs(values) {
  const body = {};
  if (values["list-id"].length) body.list_ids = values["list-id"];
  if (values.status) body.status = values.status;
  if (values.field.length) body.fields = values.field;
  const kwargs = { export: body };
  if (values["job-id"]) kwargs.job_id = values["job-id"];
  if (values.account) kwargs.account = values.account;
  const destination = {};
  if (values.bucket) destination.bucket = values.bucket;
  if (values.key) destination.key = values.key;
  if (Object.keys(destination).length) kwargs.destination = destination;
  return kwargs;
}

// The stored form of the caller's id (docs/contract.md §6): {status, result, ...}.
async function follow(client, taskId, deadline) {
  let last = "";
  while (Date.now() < deadline) {
    const meta = await client.backend.getTaskMeta(taskId);
    if (meta && meta.status === "SUCCESS") return { done: true, meta };
    if (meta && meta.status === "FAILURE") return { done: true, meta };
    if (meta && meta.status === "PROGRESS") {
      const info = meta.result;
      const line = `${info.stage}: ${info.percent_done}% done` + (info.bytes ? `, ${info.bytes} bytes` : "");
      if (line !== last) process.stderr.write(line + "\n");
      last = line;
    }
    await new Promise((resolve) => setTimeout(resolve, POLL_MS));
  }
  return { done: false };
}

async function main() {
  const { values } = parseArgs({
    options: {
      "list-id": { type: "string", multiple: true, default: [] },
      status: { type: "string" },
      field: { type: "string", multiple: true, default: [] },
      "job-id": { type: "string" },
      account: { type: "string" },
      bucket: { type: "string" },
      key: { type: "string" },
      timeout: { type: "string", default: "3600" },
    },
  });
  const broker = process.env.CELERY_BROKER_URL || DEFAULT_REDIS_URL;
  const backend = process.env.CELERY_RESULT_BACKEND || broker;
  const client = celery.createClient(broker, backend, QUEUE);
  try {
    const kwargs = exportKwargs(values);
    // The job id as the task id makes the result easy to find again from the job id alone.
    const result = client.sendTask(EXPORT_TASK, [], kwargs, kwargs.job_id);
    process.stderr.write(`enqueued job ${kwargs.job_id || result.taskId}\n`);
    const deadline = Date.now() + Number(values.timeout) * 1000;
    const { done, meta } = await follow(client, result.taskId, deadline);
    if (!done) {
      process.stderr.write(`still running after ${values.timeout}s; the export goes on\n`);
      return 5;
    }
    if (meta.status === "FAILURE") {
      // The stored exception: exc_type is one of the five failure types (docs/contract.md §3).
      const error = meta.result;
      process.stderr.write(`export failed: ${error.exc_type}: ${[].concat(error.exc_message).join(" ")}\n`);
      return 1;
    }
    process.stdout.write(JSON.stringify(meta.result) + "\n");
    return 0;
  } finally {
    await client.disconnect();
  }
}

main().then(
  (code) => process.exit(code),
  (error) => {
    process.stderr.write(`${error.stack || error}\n`);
    process.exit(3);
  },
);
