import Glibc
import Synchronization

/// A file's parsed contents, read again only when its size or modification time changed: what
/// the token registry and the quarantine list are, so that a change gunnctl makes holds at once
/// without a read per request.
final class WatchedFile<Value: Sendable>: Sendable {
    let path: String
    private let parse: @Sendable (String) -> Value
    private struct Cache: Sendable { var value: Value; var size: Int; var mtime: Int }
    private let cache: Mutex<Cache>

    init(path: String, empty: Value, parse: @escaping @Sendable (String) -> Value) {
        self.path = path
        self.parse = parse
        cache = Mutex(Cache(value: empty, size: -1, mtime: -1))
    }

    var current: Value {
        var st = stat()
        let found = stat(path, &st) == 0
        let size = found ? Int(st.st_size) : 0
        let mtime = found ? Int(st.st_mtim.tv_sec) * 1_000_000_000 + Int(st.st_mtim.tv_nsec) : 0
        return cache.withLock { c in
            if c.size != size || c.mtime != mtime {
                c = Cache(value: parse(path), size: size, mtime: mtime)
            }
            return c.value
        }
    }
}
