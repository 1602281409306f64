import HoptraceMetrics
import XCTest

final class NegotiationTests: XCTestCase {
    typealias Format = Exposition.Format

    func negotiate(_ accept: String?, native: Bool) -> Format {
        Format.negotiate(accept: accept, nativeHistograms: native)
    }

    /// The headers of the brief: text, OpenMetrics, and protobuf first.
    func testTheBriefsHeaders() {
        let text = "text/plain;version=0.0.4;q=0.5,*/*;q=0.1"
        let openMetrics = "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1"
        let protobuf = "application/vnd.google.protobuf;proto=io.prometheus.client.MetricFamily;encoding=delimited;q=0.7,text/plain;version=0.0.4;q=0.3,*/*;q=0.2"
        for native in [false, true] {
            XCTAssertEqual(negotiate(nil, native: native), .prometheusText)
            XCTAssertEqual(negotiate(text, native: native), .prometheusText)
            XCTAssertEqual(negotiate(openMetrics, native: native), .openMetrics)
        }
        XCTAssertEqual(negotiate(protobuf, native: true), .protobuf)
        XCTAssertEqual(negotiate(protobuf, native: false), .prometheusText)
    }

    /// What Prometheus sends, from its source (scrape/scrape.go and config/config.go at each tag).
    func testPrometheusReleasesHeaders() {
        // v2.4: text only
        XCTAssertEqual(negotiate("text/plain;version=0.0.4;q=1,*/*;q=0.1", native: true), .prometheusText)
        // v2.42 to v2.48, default and with --enable-feature=native-histograms
        let v242 = "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1"
        let v242Protobuf = "application/vnd.google.protobuf;proto=io.prometheus.client.MetricFamily;encoding=delimited,application/openmetrics-text;version=1.0.0;q=0.8,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1"
        XCTAssertEqual(negotiate(v242, native: true), .openMetrics)
        XCTAssertEqual(negotiate(v242Protobuf, native: true), .protobuf)
        XCTAssertEqual(negotiate(v242Protobuf, native: false), .openMetrics)
        // v2.49 on: weights from scrape_protocols, protobuf first for native histograms
        let v249Protobuf = "application/vnd.google.protobuf;proto=io.prometheus.client.MetricFamily;encoding=delimited;q=0.5,application/openmetrics-text;version=1.0.0;q=0.4,application/openmetrics-text;version=0.0.1;q=0.3,text/plain;version=0.0.4;q=0.2,*/*;q=0.1"
        XCTAssertEqual(negotiate(v249Protobuf, native: true), .protobuf)
        XCTAssertEqual(negotiate(v249Protobuf, native: false), .openMetrics)
        // v3, UTF-8 names allowed: escaping= parameters
        let v3 = "application/openmetrics-text;version=1.0.0;escaping=allow-utf-8;q=0.6,application/openmetrics-text;version=0.0.1;q=0.5,text/plain;version=1.0.0;escaping=allow-utf-8;q=0.4,text/plain;version=0.0.4;q=0.3,*/*;q=0.2"
        XCTAssertEqual(negotiate(v3, native: true), .openMetrics)
    }

    func testQValuesAndOddities() {
        // protobuf asked for with a lower q than text
        XCTAssertEqual(negotiate("application/vnd.google.protobuf;proto=io.prometheus.client.MetricFamily;encoding=delimited;q=0.2,text/plain;q=0.9", native: true), .prometheusText)
        // q=0 refuses
        XCTAssertEqual(negotiate("application/openmetrics-text;version=1.0.0;q=0,text/plain", native: true), .prometheusText)
        // protobuf of another message or not delimited: not ours
        XCTAssertEqual(negotiate("application/vnd.google.protobuf;proto=io.prometheus.client.Metric;encoding=delimited", native: true), .prometheusText)
        XCTAssertEqual(negotiate("application/vnd.google.protobuf;proto=io.prometheus.client.MetricFamily;encoding=text", native: true), .prometheusText)
        // spaces, case, quotes
        XCTAssertEqual(negotiate(" Application/OpenMetrics-Text ; version=\"1.0.0\" ; q=0.9 , text/plain ; q=0.5", native: false), .openMetrics)
        // an OpenMetrics version we do not write
        XCTAssertEqual(negotiate("application/openmetrics-text;version=2.0.0", native: false), .prometheusText)
        // equal q: the first listed
        XCTAssertEqual(negotiate("application/openmetrics-text,text/plain", native: false), .openMetrics)
        XCTAssertEqual(negotiate("text/plain,application/openmetrics-text", native: false), .prometheusText)
        // nothing we serve, garbage, empty: text
        XCTAssertEqual(negotiate("application/json", native: true), .prometheusText)
        XCTAssertEqual(negotiate(";;,,=q", native: true), .prometheusText)
        XCTAssertEqual(negotiate("", native: true), .prometheusText)
    }

    func testContentTypes() {
        XCTAssertEqual(Format.prometheusText.contentType, "text/plain; version=0.0.4; charset=utf-8")
        XCTAssertEqual(Format.openMetrics.contentType, "application/openmetrics-text; version=1.0.0; charset=utf-8")
        XCTAssertEqual(Format.protobuf.contentType,
                       "application/vnd.google.protobuf; proto=io.prometheus.client.MetricFamily; encoding=delimited")
    }
}
