import Foundation
import Sparkplug
import TestSupport
import Testing

/// Sparkplug B 3.0 edge-node conformance by `tck-id` (docs/SPARKPLUG.md): every assertion below is checked against
/// one captured life of the daemon (`ConformanceCapture`), as the Tahu-decoding host and mosquitto's log saw it.
/// Each id is its own test case; the table in docs/SPARKPLUG.md names this test for it.
@Suite(.serialized) struct SparkplugConformanceTests {
    @Test("Edge node tck-id assertions on one captured session", arguments: CapturedSessionChecks.ids)
    func assertion(_ id: String) throws {
        let capture = try ConformanceCapture.shared.get()
        try #require(capture.stopStatus == 0, "the agent stopped cleanly")
        CapturedSessionChecks.checks[id]!(capture)
    }
}

typealias CaptureCheck = @Sendable (ConformanceCapture) -> Void

/// The checks, each under every tck-id it decides.
enum CapturedSessionChecks {
    static var ids: [String] { checks.keys.sorted() }

    static let checks: [String: CaptureCheck] = {
        var out: [String: CaptureCheck] = [:]
        for (ids, check) in table {
            for id in ids {
                precondition(out[id] == nil, "\(id) twice")
                out[id] = check
            }
        }
        return out
    }()

    static let table: [([String], CaptureCheck)] = [
        (
            [
                "tck-id-topic-structure", "tck-id-topic-structure-namespace-a",
                "tck-id-topic-structure-namespace-device-id-associated-message-types",
                "tck-id-topic-structure-namespace-device-id-non-associated-message-types",
                "tck-id-topics-nbirth-topic", "tck-id-topics-ndata-topic", "tck-id-topics-ndeath-topic",
                "tck-id-topics-dbirth-topic", "tck-id-topics-ddata-topic", "tck-id-topics-ddeath-topic",
                "tck-id-message-flow-edge-node-birth-publish-nbirth-topic",
                "tck-id-message-flow-device-birth-publish-dbirth-topic",
                "tck-id-message-flow-device-birth-publish-dbirth-match-edge-node-topic",
                "tck-id-message-flow-edge-node-birth-publish-will-message-topic", "tck-id-intro-group-id-string",
                "tck-id-intro-edge-node-id-string", "tck-id-intro-device-id-string",
            ], topicShapes
        ),
        (
            [
                "tck-id-topics-ncmd-topic", "tck-id-topics-dcmd-topic", "tck-id-message-flow-edge-node-ncmd-subscribe",
                "tck-id-message-flow-device-dcmd-subscribe", "tck-id-message-flow-edge-node-birth-publish-phid-wait-id",
            ], subscriptions
        ),
        (
            [
                "tck-id-principles-persistence-clean-session-311",
                "tck-id-message-flow-edge-node-birth-publish-will-message",
                "tck-id-message-flow-edge-node-birth-publish-will-message-qos",
                "tck-id-message-flow-edge-node-birth-publish-will-message-will-retained",
                "tck-id-payloads-ndeath-will-message", "tck-id-payloads-ndeath-will-message-qos",
                "tck-id-payloads-ndeath-will-message-retain",
            ], connects
        ),
        (
            [
                "tck-id-topics-nbirth-mqtt", "tck-id-payloads-nbirth-qos", "tck-id-payloads-nbirth-retain",
                "tck-id-message-flow-edge-node-birth-publish-nbirth-qos",
                "tck-id-message-flow-edge-node-birth-publish-nbirth-retained",
            ], flags("NBIRTH")
        ),
        (
            [
                "tck-id-topics-dbirth-mqtt", "tck-id-payloads-dbirth-qos", "tck-id-payloads-dbirth-retain",
                "tck-id-message-flow-device-birth-publish-dbirth-qos",
                "tck-id-message-flow-device-birth-publish-dbirth-retained",
            ], flags("DBIRTH")
        ),
        (["tck-id-topics-ndata-mqtt", "tck-id-payloads-ndata-qos", "tck-id-payloads-ndata-retain"], flags("NDATA")),
        (["tck-id-topics-ddata-mqtt", "tck-id-payloads-ddata-qos", "tck-id-payloads-ddata-retain"], flags("DDATA")),
        (["tck-id-topics-ddeath-mqtt"], flags("DDEATH")),
        (
            [
                "tck-id-payloads-sequence-num-always-included", "tck-id-topics-ndeath-seq",
                "tck-id-payloads-ndeath-seq",
                "tck-id-payloads-dbirth-seq", "tck-id-payloads-ndata-seq", "tck-id-payloads-ddata-seq",
                "tck-id-payloads-ddeath-seq",
            ], seqPresence
        ),
        (
            [
                "tck-id-topics-nbirth-seq-num", "tck-id-payloads-nbirth-seq", "tck-id-payloads-sequence-num-req-nbirth",
                "tck-id-message-flow-edge-node-birth-publish-nbirth-payload-seq",
            ], nbirthSeqZero
        ),
        (
            [
                "tck-id-payloads-sequence-num-incrementing", "tck-id-topics-dbirth-seq", "tck-id-topics-ndata-seq-num",
                "tck-id-topics-ddata-seq-num", "tck-id-topics-ddeath-seq-num", "tck-id-payloads-dbirth-seq-inc",
                "tck-id-payloads-ndata-seq-inc", "tck-id-payloads-ddata-seq-inc", "tck-id-payloads-ddeath-seq-inc",
                "tck-id-payloads-ddeath-seq-number", "tck-id-message-flow-device-birth-publish-dbirth-payload-seq",
            ], seqIncrements
        ),
        (
            [
                "tck-id-topics-nbirth-timestamp", "tck-id-payloads-nbirth-timestamp", "tck-id-topics-ndata-timestamp",
                "tck-id-payloads-ndata-timestamp", "tck-id-topics-dbirth-timestamp", "tck-id-payloads-dbirth-timestamp",
                "tck-id-topics-ddata-timestamp", "tck-id-payloads-ddata-timestamp", "tck-id-payloads-ddeath-timestamp",
                "tck-id-payloads-timestamp-in-UTC",
            ], payloadTimestamps
        ),
        (
            ["tck-id-payloads-name-birth-data-requirement", "tck-id-payloads-metric-timestamp-in-UTC"],
            metricTimestamps
        ),
        (
            [
                "tck-id-topics-nbirth-metrics", "tck-id-topics-dbirth-metrics", "tck-id-payloads-metric-datatype-req",
                "tck-id-payloads-metric-datatype-value", "tck-id-payloads-metric-datatype-value-type",
                "tck-id-payloads-name-requirement", "tck-id-case-sensitivity-metric-names",
            ], birthMetricDefinitions
        ),
        (
            [
                "tck-id-topics-nbirth-metric-reqs", "tck-id-topics-dbirth-metric-reqs",
                "tck-id-operational-behavior-data-publish-nbirth", "tck-id-operational-behavior-data-publish-dbirth",
            ], dataOnlyForBornMetrics
        ),
        (
            [
                "tck-id-topics-nbirth-bdseq-included", "tck-id-payloads-nbirth-bdseq",
                "tck-id-message-flow-edge-node-birth-publish-nbirth-payload-bdSeq",
                "tck-id-topics-nbirth-bdseq-matching",
                "tck-id-payloads-nbirth-bdseq-repeat", "tck-id-payloads-ndeath-bdseq",
                "tck-id-topics-nbirth-bdseq-increment",
                "tck-id-message-flow-edge-node-birth-publish-will-message-payload-bdSeq",
                "tck-id-operational-behavior-data-commands-rebirth-action-3",
            ], bdSeqs
        ),
        (
            [
                "tck-id-topics-ndeath-payload", "tck-id-message-flow-edge-node-birth-publish-will-message-payload",
                "tck-id-message-flow-edge-node-birth-publish-nbirth-payload",
                "tck-id-message-flow-device-birth-publish-dbirth-payload",
            ], payloadsDecode
        ),
        (
            [
                "tck-id-topics-nbirth-rebirth-metric", "tck-id-payloads-nbirth-rebirth-req",
                "tck-id-operational-behavior-data-commands-rebirth-name",
                "tck-id-operational-behavior-data-commands-rebirth-datatype",
                "tck-id-operational-behavior-data-commands-rebirth-value",
                "tck-id-operational-behavior-data-commands-rebirth-name-aliases",
            ], rebirthMetric
        ),
        (
            [
                "tck-id-operational-behavior-data-commands-rebirth-action-1",
                "tck-id-operational-behavior-data-commands-rebirth-action-2",
            ], rebirthAnswer
        ),
        (
            [
                "tck-id-principles-birth-certificates-order", "tck-id-payloads-dbirth-order",
                "tck-id-payloads-ndata-order", "tck-id-payloads-ddata-order",
                "tck-id-message-flow-device-birth-publish-nbirth-wait",
                "tck-id-message-flow-edge-node-birth-publish-connect",
            ], birthsFirst
        ),
        (
            [
                "tck-id-message-flow-edge-node-birth-publish-phid-wait",
                "tck-id-operational-behavior-edge-node-birth-sequence-wait",
            ], birthsAfterState
        ),
        (
            [
                "tck-id-topics-ndata-payload", "tck-id-operational-behavior-data-publish-nbirth-change",
                "tck-id-principles-rbe-recommended",
            ], onlyChanges("NDATA")
        ),
        (
            ["tck-id-topics-ddata-payload", "tck-id-operational-behavior-data-publish-dbirth-change"],
            onlyChanges("DDATA")
        ),
        (
            [
                "tck-id-operational-behavior-data-publish-nbirth-order",
                "tck-id-operational-behavior-data-publish-dbirth-order",
            ], chronological
        ),
        (["tck-id-operational-behavior-data-publish-nbirth-values"], nbirthValues),
        (["tck-id-operational-behavior-data-publish-dbirth-values"], dbirthValues),
        (["tck-id-operational-behavior-device-ddeath"], deviceDeath),
        (
            [
                "tck-id-operational-behavior-edge-node-intentional-disconnect-ndeath",
                "tck-id-operational-behavior-edge-node-intentional-disconnect-packet",
                "tck-id-payloads-ndeath-will-message-publisher",
                "tck-id-payloads-ndeath-will-message-publisher-disconnect-mqtt311",
            ], gracefulDeath
        ),
        (
            [
                "tck-id-payloads-alias-uniqueness", "tck-id-payloads-alias-birth-requirement",
                "tck-id-payloads-alias-data-cmd-requirement",
            ], aliases
        ),
        (
            [
                "tck-id-payloads-propertyset-keys-array-size", "tck-id-payloads-propertyset-values-array-size",
                "tck-id-payloads-metric-propertyvalue-type-type", "tck-id-payloads-metric-propertyvalue-type-value",
                "tck-id-payloads-metric-propertyvalue-type-req", "tck-id-payloads-propertyset-quality-value-type",
                "tck-id-payloads-propertyset-quality-value-value",
            ], properties
        ),
        (["tck-id-operational-behavior-primary-application-state-with-multiple-servers-single-server"], oneConnection),
    ]
}
