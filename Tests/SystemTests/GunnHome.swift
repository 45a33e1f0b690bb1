import Foundation
import Glibc
import XCTest
import GunnCore

/// A gunn home driven from the outside, as a user would: gunnctl and the supervisor's status.
struct GunnHome {
    let home: String
    init(_ home: String) { self.home = home }

    static var bin: URL { EventLogProcessTests.root.appendingPathComponent(".build/debug") }

    struct Ctl { var status: Int32; var out: String; var err: String; var json: JSONValue? }

    /// Runs gunnctl and waits for it.
    func gunnctl(_ args: [String]) throws -> Ctl {
        let p = Process()
        p.executableURL = Self.bin.appendingPathComponent("gunnctl")
        p.arguments = ["--home", home] + args
        let out = Pipe(), err = Pipe()
        p.standardOutput = out; p.standardError = err
        try p.run()
        let o = out.fileHandleForReading.readDataToEndOfFile()
        let e = err.fileHandleForReading.readDataToEndOfFile()
        p.waitUntilExit()
        let text = String(decoding: o, as: UTF8.self)
        return Ctl(status: p.terminationStatus, out: text, err: String(decoding: e, as: UTF8.self),
                   json: args.contains("--json") ? try? JSONParser.parse(Array(text.split(separator: "\n").first.map { Array($0.utf8) } ?? [])) : nil)
    }

    /// Runs one of gunn's binaries to its end (stdout to /dev/null): its exit status and stderr.
    static func runToExit(_ binary: String, _ args: [String], environment: [String: String]? = nil) throws -> (Int32, String) {
        let p = Process()
        p.executableURL = bin.appendingPathComponent(binary)
        p.arguments = args
        if let environment { p.environment = environment }
        let err = Pipe()
        p.standardError = err
        p.standardOutput = FileHandle(forWritingAtPath: "/dev/null")
        try p.run()
        let text = String(decoding: err.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        p.waitUntilExit()
        return (p.terminationStatus, text)
    }

    /// The supervisor's children as `gunnctl --json status` reports them, by name.
    func children() throws -> [String: JSONValue] {
        guard let j = try gunnctl(["--json", "status"]).json, case .array(let items)? = j["children"] else { return [:] }
        var out: [String: JSONValue] = [:]
        for c in items { if let n = c["name"]?.stringValue { out[n] = c } }
        return out
    }

    /// Waits until every named child is ready (with a pid other than `notPIDs[name]`).
    func waitReady(_ names: [String], notPIDs: [String: Double] = [:], seconds: Double = 30) throws -> [String: JSONValue] {
        let until = Date().addingTimeInterval(seconds)
        var last: [String: JSONValue] = [:]
        while Date() < until {
            last = (try? children()) ?? [:]
            if names.allSatisfy({ n in
                guard let c = last[n], c["state"]?.stringValue == "ready", case .number(let pid)? = c["pid"] else { return false }
                return notPIDs[n] != pid
            }) { return last }
            usleep(50_000)
        }
        XCTFail("children \(names) not ready within \(seconds) s: \(last); supervisor stderr: \((try? String(contentsOfFile: home + "/supervisor.err", encoding: .utf8)) ?? "")")
        return last
    }
}
