// Validates Kubernetes manifests against the Kubernetes schemas with kubernetes-models.
//
//   node validate.js FILE.yaml...        (run with NODE_PATH or from a directory whose
//                                         node_modules holds js-yaml and kubernetes-models)
//   node validate.js --dump FILE.yaml    prints the file's documents as one JSON array (js-yaml's
//                                         reading, for the test's own checks) and exits
//
// Every YAML document must have an apiVersion and a kind that kubernetes-models knows; each is
// built with its class (new StatefulSet(obj), ...) and validate()d, which checks it against the
// schema of that kind (required fields, types, enums, formats). Prints one line per document,
// "OK <file> <kind>/<name>" or "FAIL <file> <kind>/<name>: <why>", and exits 1 when any failed.
"use strict";

const fs = require("fs");
const path = require("path");
const yaml = require("js-yaml");

// apiVersion "apps/v1" -> module "kubernetes-models/apps/v1"; core "v1" -> "kubernetes-models/v1".
function modelClass(apiVersion, kind) {
  let mod;
  try {
    mod = require(`kubernetes-models/${apiVersion}`);
  } catch (e) {
    return null;
  }
  return typeof mod[kind] === "function" ? mod[kind] : null;
}

if (process.argv[2] === "--dump") {
  const docs = yaml.loadAll(fs.readFileSync(process.argv[3], "utf8")).filter((d) => d != null);
  process.stdout.write(JSON.stringify(docs) + "\n");
  process.exit(0);
}

let failed = 0;
let checked = 0;
for (const file of process.argv.slice(2)) {
  const docs = yaml.loadAll(fs.readFileSync(file, "utf8")).filter((d) => d != null);
  if (docs.length === 0) {
    console.log(`FAIL ${file}: no documents`);
    failed++;
  }
  for (const doc of docs) {
    const label = `${path.basename(file)} ${doc.kind}/${doc.metadata && doc.metadata.name}`;
    const Cls = modelClass(doc.apiVersion, doc.kind);
    if (!Cls) {
      console.log(`FAIL ${label}: unknown apiVersion/kind ${doc.apiVersion} ${doc.kind}`);
      failed++;
      continue;
    }
    try {
      new Cls(doc).validate();
      console.log(`OK ${label}`);
    } catch (e) {
      const details = e.errors ? JSON.stringify(e.errors) : "";
      console.log(`FAIL ${label}: ${e.message} ${details}`);
      failed++;
    }
    checked++;
  }
}
console.log(`${checked} document(s) checked, ${failed} failure(s)`);
process.exit(failed ? 1 : 0);
