import { createRequire } from 'node:module';
import type { History } from '@temporalio/common/lib/proto-utils';
import { temporal } from '@temporalio/proto';

// Canonical (proto3 JSON) history files, the same conversion as the SDK's historyToJSON/historyFromJSON.
// Those throw "type must be a Type" in this install: npm nests a separate protobufjs@8 under each
// @temporalio package (the root slot holds grpc's protobufjs@7), and protojson's instanceof check fails
// across copies. So this uses protojson from the very protobufjs copy @temporalio/proto is built on.

interface ReflectionType {
  readonly fullName: string;
}
interface ProtoJson {
  toJson(type: ReflectionType, message: object): unknown;
  fromJson(type: ReflectionType, json: unknown, options: { ignoreUnknownFields: boolean }): History;
}

const protoRequire = createRequire(require.resolve('@temporalio/proto'));
const protojson = protoRequire('protobufjs/ext/protojson') as ProtoJson;
const root = protoRequire('@temporalio/proto') as { lookupType(path: string): ReflectionType };
const historyType = root.lookupType('temporal.api.history.v1.History');

/** History → the JSON text `temporal workflow show --output json` and the SDK's historyToJSON write. */
export function historyToJSON(history: History): string {
  return JSON.stringify(protojson.toJson(historyType, temporal.api.history.v1.History.fromObject(history)), null, 2);
}

/** Parsed canonical JSON → History; unknown fields (a newer server's) are ignored, as the SDK does. */
export function historyFromJSON(json: unknown): History {
  return protojson.fromJson(historyType, json, { ignoreUnknownFields: true });
}
