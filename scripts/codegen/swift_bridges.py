#!/usr/bin/env python3
"""Generates Sources/ChatMeshAPI from a FileDescriptorSet of proto/.

For every message: a Swift value type, a bridge from its protobuf-c struct
(decode) and into one (encode), and a wire schema used to refuse strings that
protobuf-c would cut at a NUL or that are not UTF-8. For every service: a
namespace with method descriptors, a `Handler` protocol (one async method per
RPC) with its routes, and a typed `Client`.

The output depends only on the descriptor set, so `scripts/generate --check`
can compare it byte for byte with what is committed.
"""
import os
import re
import sys

from google.protobuf import descriptor_pb2 as d

FD = d.FieldDescriptorProto

SWIFT_KEYWORDS = {
    "associatedtype", "class", "deinit", "enum", "extension", "fileprivate", "func", "import", "init",
    "inout", "internal", "let", "open", "operator", "private", "protocol", "public", "rethrows",
    "static", "struct", "subscript", "typealias", "var", "break", "case", "continue", "default",
    "defer", "do", "else", "fallthrough", "for", "guard", "if", "in", "repeat", "return", "switch",
    "where", "while", "as", "catch", "false", "is", "nil", "super", "self", "Self", "throw", "throws",
    "true", "try", "Type", "Protocol", "any", "some",
}
C_KEYWORDS = {
    "auto", "break", "case", "char", "const", "continue", "default", "do", "double", "else", "enum",
    "extern", "float", "for", "goto", "if", "int", "long", "register", "return", "short", "signed",
    "sizeof", "static", "struct", "switch", "typedef", "union", "unsigned", "void", "volatile", "while",
}

# Packages whose types would collide with ChatMesh's own (grpc.testing.Empty, chatmesh.v1.Empty):
# their Swift names carry a prefix.
SWIFT_PREFIXES = {"grpc.testing": "Interop"}

SCALARS = {
    FD.TYPE_INT32: ("Int32", "0"), FD.TYPE_SINT32: ("Int32", "0"), FD.TYPE_SFIXED32: ("Int32", "0"),
    FD.TYPE_INT64: ("Int64", "0"), FD.TYPE_SINT64: ("Int64", "0"), FD.TYPE_SFIXED64: ("Int64", "0"),
    FD.TYPE_UINT32: ("UInt32", "0"), FD.TYPE_FIXED32: ("UInt32", "0"),
    FD.TYPE_UINT64: ("UInt64", "0"), FD.TYPE_FIXED64: ("UInt64", "0"),
    FD.TYPE_FLOAT: ("Float", "0"), FD.TYPE_DOUBLE: ("Double", "0"),
}


def camel_to_lower(name):
    """protoc-c's CamelToLower: an underscore before every capital but the first."""
    out = []
    for i, ch in enumerate(name):
        if ch.isupper():
            if i > 0:
                out.append("_")
            out.append(ch.lower())
        else:
            out.append(ch)
    return "".join(out)


def lower_camel(snake):
    parts = snake.split("_")
    head = parts[0]
    return head + "".join(p[:1].upper() + p[1:] for p in parts[1:])


def swift_ident(name):
    return f"`{name}`" if name in SWIFT_KEYWORDS else name


def c_field(name):
    return name + "_" if name in C_KEYWORDS else name


def enum_case_name(value_name):
    return lower_camel(value_name.lower())


class Model:
    """Every message and enum of the set, by full proto name (".pkg.Msg")."""

    def __init__(self, fds):
        self.files = [f for f in fds.file]
        self.messages = {}
        self.enums = {}
        for f in self.files:
            pkg = f.package
            for m in f.message_type:
                self._add_message(f, pkg, [], m)
            for e in f.enum_type:
                self._add_enum(f, pkg, [], e)

    def _add_message(self, f, pkg, outer, m):
        path = outer + [m.name]
        full = "." + pkg + "." + ".".join(path)
        self.messages[full] = (f, pkg, path, m)
        for n in m.nested_type:
            self._add_message(f, pkg, path, n)
        for e in m.enum_type:
            self._add_enum(f, pkg, path, e)

    def _add_enum(self, f, pkg, outer, e):
        path = outer + [e.name]
        self.enums["." + pkg + "." + ".".join(path)] = (f, pkg, path, e)

    def is_map_entry(self, full):
        return self.messages[full][3].options.map_entry

    def swift_name(self, full):
        entry = self.messages.get(full) or self.enums[full]
        pkg, path = entry[1], list(entry[2])
        path[0] = SWIFT_PREFIXES.get(pkg, "") + path[0]
        return ".".join(path)

    def c_type(self, full):
        entry = self.messages.get(full) or self.enums.get(full)
        pkg, path = entry[1], entry[2]
        return "__".join([p[:1].upper() + p[1:] for p in pkg.split(".")] + path)

    def c_func_prefix(self, full):
        _, pkg, path, _ = self.messages[full]
        return "__".join(pkg.split(".") + [camel_to_lower(p) for p in path])


class Emitter:
    def __init__(self):
        self.lines = []
        self.level = 0

    def __call__(self, text=""):
        for line in text.split("\n"):
            self.lines.append(("    " * self.level + line) if line else "")

    def indent(self):
        self.level += 1

    def dedent(self):
        self.level -= 1

    def text(self):
        return "\n".join(self.lines) + "\n"


def comments_by_path(f):
    out = {}
    for loc in f.source_code_info.location:
        text = loc.leading_comments.strip("\n")
        if text:
            out[tuple(loc.path)] = text
    return out


ACCESS_LINE = re.compile(r"^\s*Access:\s*(\w+)\b", re.MULTILINE)


def method_access(comment, where):
    """Who may call an RPC: its comment's `Access: managers` or `Access: services` line, else staff
    (every token of the shop). Tests/interop/test_authorization.py reads the same line."""
    found = ACCESS_LINE.findall(comment)
    if not found:
        return "staff"
    if len(found) > 1 or found[0] not in ("staff", "managers", "services"):
        raise SystemExit(f"{where}: 'Access:' must name one of staff, managers, services (found {found})")
    return found[0]


def doc(e, text):
    if not text:
        return
    for line in text.split("\n"):
        e("///" + (line if line.startswith(" ") or not line else " " + line))


class FieldInfo:
    def __init__(self, model, msg_full, fld):
        self.model = model
        self.fld = fld
        self.name = fld.name
        self.swift = swift_ident(lower_camel(fld.name))
        self.c = c_field(fld.name.lower())
        self.repeated = fld.label == FD.LABEL_REPEATED
        self.type = fld.type
        self.type_name = fld.type_name
        self.is_map = self.repeated and self.type == FD.TYPE_MESSAGE and model.is_map_entry(self.type_name)
        self.qualified = msg_full[1:] + "." + fld.name
        if self.is_map:
            entry = model.messages[self.type_name][3]
            self.key = FieldInfo(model, self.type_name, entry.field[0])
            self.value = FieldInfo(model, self.type_name, entry.field[1])
            self.key.qualified = self.qualified + ".key"
            self.value.qualified = self.qualified + ".value"

    def element_swift_type(self):
        t = self.type
        if t in SCALARS:
            return SCALARS[t][0]
        if t == FD.TYPE_BOOL:
            return "Bool"
        if t == FD.TYPE_STRING:
            return "String"
        if t == FD.TYPE_BYTES:
            return "[UInt8]"
        if t in (FD.TYPE_ENUM, FD.TYPE_MESSAGE):
            return self.model.swift_name(self.type_name)
        raise SystemExit(f"unsupported field type {t} in {self.qualified}")

    def swift_type(self):
        if self.is_map:
            return f"[{self.key.element_swift_type()}: {self.value.element_swift_type()}]"
        el = self.element_swift_type()
        if self.repeated:
            return f"[{el}]"
        if self.type == FD.TYPE_MESSAGE:
            return el + "?"
        return el

    def default(self):
        if self.is_map:
            return "[:]"
        if self.repeated:
            return "[]"
        t = self.type
        if t in SCALARS:
            return SCALARS[t][1]
        return {FD.TYPE_BOOL: "false", FD.TYPE_STRING: '""', FD.TYPE_BYTES: "[]",
                FD.TYPE_MESSAGE: "nil"}.get(t, ".init(rawValue: 0)" if t == FD.TYPE_ENUM else None)


def from_c_scalar(fi, expr):
    """A C value of fi's element type (not repeated) as a Swift expression."""
    t = fi.type
    if t in SCALARS:
        return expr
    if t == FD.TYPE_BOOL:
        return f"({expr} != 0)"
    if t == FD.TYPE_STRING:
        return f"_PB.string({expr})"
    if t == FD.TYPE_BYTES:
        return f"_PB.bytes({expr})"
    if t == FD.TYPE_ENUM:
        return f"{fi.element_swift_type()}(rawValue: Int32(truncatingIfNeeded: {expr}.rawValue))"
    if t == FD.TYPE_MESSAGE:
        return f"{fi.element_swift_type()}(_c: {expr})"
    raise SystemExit("unsupported")


def to_c_scalar(model, fi, expr):
    t = fi.type
    if t in SCALARS:
        return expr
    if t == FD.TYPE_BOOL:
        return f"({expr} ? 1 : 0)"
    if t == FD.TYPE_STRING:
        return f'try a.string({expr}, field: "{fi.qualified}")'
    if t == FD.TYPE_BYTES:
        return f"a.bytes({expr})"
    if t == FD.TYPE_ENUM:
        return f"{model.c_type(fi.type_name)}(rawValue: .init(truncatingIfNeeded: {expr}.rawValue))"
    if t == FD.TYPE_MESSAGE:
        return f"try {fi.element_swift_type()}._encodeC({expr}, &a)"
    raise SystemExit("unsupported")


def c_element_type(model, fi):
    t = fi.type
    c = {FD.TYPE_INT32: "Int32", FD.TYPE_SINT32: "Int32", FD.TYPE_SFIXED32: "Int32",
         FD.TYPE_INT64: "Int64", FD.TYPE_SINT64: "Int64", FD.TYPE_SFIXED64: "Int64",
         FD.TYPE_UINT32: "UInt32", FD.TYPE_FIXED32: "UInt32", FD.TYPE_UINT64: "UInt64",
         FD.TYPE_FIXED64: "UInt64", FD.TYPE_FLOAT: "Float", FD.TYPE_DOUBLE: "Double",
         FD.TYPE_BOOL: "protobuf_c_boolean", FD.TYPE_STRING: "UnsafeMutablePointer<CChar>?",
         FD.TYPE_BYTES: "ProtobufCBinaryData"}.get(t)
    if c:
        return c
    if t == FD.TYPE_ENUM:
        return model.c_type(fi.type_name)
    return f"UnsafeMutablePointer<{model.c_type(fi.type_name)}>?"


def emit_enum(e, model, full, comments, cpath):
    _, _, path, en = model.enums[full]
    doc(e, comments.get(tuple(cpath)))
    e(f"public enum {model.swift_name(full).split('.')[-1]}: RawRepresentable, Sendable, Hashable, CaseIterable {{")
    e.indent()
    for i, v in enumerate(en.value):
        doc(e, comments.get(tuple(cpath + [2, i])))
        e(f"case {swift_ident(enum_case_name(v.name))}")
    e("/// A value this build does not know (proto3 enums are open).")
    e("case unrecognized(Int32)")
    e()
    e("public static let allCases: [Self] = [" + ", ".join("." + swift_ident(enum_case_name(v.name)) for v in en.value) + "]")
    e()
    e("public init(rawValue: Int32) {")
    e.indent()
    e("switch rawValue {")
    for v in en.value:
        e(f"case {v.number}: self = .{swift_ident(enum_case_name(v.name))}")
    e("default: self = .unrecognized(rawValue)")
    e("}")
    e.dedent()
    e("}")
    e()
    e("public var rawValue: Int32 {")
    e.indent()
    e("switch self {")
    for v in en.value:
        e(f"case .{swift_ident(enum_case_name(v.name))}: {v.number}")
    e("case .unrecognized(let value): value")
    e("}")
    e.dedent()
    e("}")
    e()
    e("/// The value's name as the proto spells it.")
    e("public var protoName: String {")
    e.indent()
    e("switch self {")
    for v in en.value:
        e(f'case .{swift_ident(enum_case_name(v.name))}: "{v.name}"')
    e('case .unrecognized(let value): String(value)')
    e("}")
    e.dedent()
    e("}")
    e.dedent()
    e("}")


def emit_message(e, model, full, comments, cpath):
    f, pkg, path, m = model.messages[full]
    name = model.swift_name(full).split(".")[-1]
    fields = [FieldInfo(model, full, fl) for fl in m.field]
    if any(fl.HasField("oneof_index") for fl in m.field):
        raise SystemExit(f"{full}: oneof is not supported by the bridge generator")
    doc(e, comments.get(tuple(cpath)))
    top = len(path) == 1
    conformances = "RPCMessage, Hashable" if top else "Sendable, Hashable"
    if top and any(fi.name == "shop_id" and fi.type == FD.TYPE_STRING and not fi.repeated and fi.fld.number == 1 for fi in fields):
        conformances += ", ShopScoped"
    e(f"public struct {name}: {conformances} {{")
    e.indent()
    if top:
        e(f'public static let protoName = "{full[1:]}"')
        e()
    for i, fi in enumerate(fields):
        doc(e, comments.get(tuple(cpath + [2, i])))
        e(f"public var {fi.swift}: {fi.swift_type()} = {fi.default()}")
    if fields:
        e()
    e("public init() {}")
    if fields:
        e()
        params = ", ".join(f"{fi.swift}: {fi.swift_type()} = {fi.default()}" for fi in fields)
        e(f"public init({params}) {{")
        e.indent()
        for fi in fields:
            e(f"self.{fi.swift} = {fi.swift}")
        e.dedent()
        e("}")
    # Nested enums and messages (map entries become dictionaries, not types).
    for i, en in enumerate(m.enum_type):
        e()
        emit_enum(e, model, full + "." + en.name, comments, cpath + [4, i])
    for i, nm in enumerate(m.nested_type):
        if nm.options.map_entry:
            continue
        e()
        emit_message(e, model, full + "." + nm.name, comments, cpath + [3, i])
    e.dedent()
    e("}")
    e()
    emit_bridge(e, model, full, fields)


def schema_expr(model, full):
    return model.swift_name(full) + "._pbSchema"


def emit_bridge(e, model, full, fields):
    ctype = model.c_type(full)
    fn = model.c_func_prefix(full)
    sname = model.swift_name(full)
    _, _, path, m = model.messages[full]
    e(f"extension {sname} {{")
    e.indent()
    # Wire schema: string fields and message fields, for the NUL / UTF-8 check before protobuf-c.
    entries = []
    for fi in fields:
        if fi.is_map:
            sub = []
            for kv in (fi.key, fi.value):
                if kv.type == FD.TYPE_STRING:
                    sub.append(f'.init(number: {kv.fld.number}, name: "{kv.qualified}", kind: .string)')
                elif kv.type == FD.TYPE_MESSAGE:
                    sub.append(f'.init(number: {kv.fld.number}, name: "{kv.qualified}", kind: .message({schema_expr(model, kv.type_name)}))')
            if sub:
                entries.append(f'.init(number: {fi.fld.number}, name: "{fi.qualified}", kind: .message(_PBSchema(fields: [{", ".join(sub)}])))')
        elif fi.type == FD.TYPE_STRING:
            entries.append(f'.init(number: {fi.fld.number}, name: "{fi.qualified}", kind: .string)')
        elif fi.type == FD.TYPE_MESSAGE:
            entries.append(f'.init(number: {fi.fld.number}, name: "{fi.qualified}", kind: .message({schema_expr(model, fi.type_name)}))')
    if entries:
        e("static let _pbSchema = _PBSchema(fields: [")
        e.indent()
        for en in entries:
            e(en + ",")
        e.dedent()
        e("])")
    else:
        e("static let _pbSchema = _PBSchema(fields: [])")
    e()
    # C -> Swift
    e(f"init(_c p: UnsafePointer<{ctype}>) {{")
    e.indent()
    e("self.init()")
    if fields:
        e("let c = p.pointee")
    for fi in fields:
        if fi.is_map:
            k = from_c_scalar(fi.key, "$0.pointee." + fi.key.c)
            v = from_c_scalar(fi.value, "$0.pointee." + fi.value.c)
            e(f"self.{fi.swift} = _PB.map(c.n_{fi.c}, c.{fi.c}) {{ ({k}, {v}) }}")
        elif fi.repeated:
            if fi.type == FD.TYPE_MESSAGE:
                e(f"self.{fi.swift} = _PB.messages(c.n_{fi.c}, c.{fi.c}) {{ {fi.element_swift_type()}(_c: $0) }}")
            elif fi.type == FD.TYPE_STRING:
                e(f"self.{fi.swift} = _PB.array(c.n_{fi.c}, c.{fi.c}) {{ _PB.string($0) }}")
            else:
                e(f"self.{fi.swift} = _PB.array(c.n_{fi.c}, c.{fi.c}) {{ {from_c_scalar(fi, '$0')} }}")
        elif fi.type == FD.TYPE_MESSAGE:
            e(f"self.{fi.swift} = c.{fi.c}.map {{ {fi.element_swift_type()}(_c: $0) }}")
        else:
            e(f"self.{fi.swift} = {from_c_scalar(fi, 'c.' + fi.c)}")
    e.dedent()
    e("}")
    e()
    # Swift -> C, every pointer into the arena.
    e(f"static func _encodeC(_ v: {sname}, _ a: inout _PBArena) throws(MessageCodingError) -> UnsafeMutablePointer<{ctype}> {{")
    e.indent()
    e(f"let p = a.allocate({ctype}.self, count: 1)")
    e(f"{fn}__init(p)")
    for fi in fields:
        tgt = f"p.pointee.{fi.c}"
        if fi.is_map:
            entry_c = model.c_type(fi.type_name)
            entry_fn = model.c_func_prefix(fi.type_name)
            k = to_c_scalar(model, fi.key, "entry.key")
            vv = to_c_scalar(model, fi.value, "entry.value")
            e(f"if !v.{fi.swift}.isEmpty {{")
            e.indent()
            e(f"let items = a.allocate(UnsafeMutablePointer<{entry_c}>?.self, count: v.{fi.swift}.count)")
            e("// Sorted so that the same value always encodes to the same bytes.")
            e(f"for (i, entry) in v.{fi.swift}.sorted(by: {{ $0.key < $1.key }}).enumerated() {{")
            e.indent()
            e(f"let ep = a.allocate({entry_c}.self, count: 1)")
            e(f"{entry_fn}__init(ep)")
            e(f"ep.pointee.{fi.key.c} = {k}")
            e(f"ep.pointee.{fi.value.c} = {vv}")
            e("items[i] = ep")
            e.dedent()
            e("}")
            e(f"p.pointee.n_{fi.c} = v.{fi.swift}.count")
            e(f"{tgt} = items")
            e.dedent()
            e("}")
        elif fi.repeated:
            e(f"if !v.{fi.swift}.isEmpty {{")
            e.indent()
            e(f"let items = a.allocate({c_element_type(model, fi)}.self, count: v.{fi.swift}.count)")
            e(f"for (i, item) in v.{fi.swift}.enumerated() {{ items[i] = {to_c_scalar(model, fi, 'item')} }}")
            e(f"p.pointee.n_{fi.c} = v.{fi.swift}.count")
            e(f"{tgt} = items")
            e.dedent()
            e("}")
        elif fi.type == FD.TYPE_MESSAGE:
            e(f"if let m = v.{fi.swift} {{ {tgt} = {to_c_scalar(model, fi, 'm')} }}")
        elif fi.type in (FD.TYPE_STRING, FD.TYPE_BYTES):
            e(f"if !v.{fi.swift}.isEmpty {{ {tgt} = {to_c_scalar(model, fi, 'v.' + fi.swift)} }}")
        else:
            e(f"{tgt} = {to_c_scalar(model, fi, 'v.' + fi.swift)}")
    e("return p")
    e.dedent()
    e("}")
    if len(path) == 1:
        e()
        e("public init(protobuf buffer: ByteBuffer) throws(MessageCodingError) {")
        e.indent()
        e(f"self = try _PB.decode(buffer, schema: Self._pbSchema, unpack: {fn}__unpack, free: {fn}__free_unpacked, make: {{ Self(_c: $0) }})")
        e.dedent()
        e("}")
        e()
        e("public func encode(into buffer: inout ByteBuffer) throws(MessageCodingError) {")
        e.indent()
        e(f"try _PB.encode(self, into: &buffer, build: Self._encodeC, size: {fn}__get_packed_size, pack: {fn}__pack)")
        e.dedent()
        e("}")
    e.dedent()
    e("}")


def emit_service(e, model, f, si, svc, comments):
    full = f.package + "." + svc.name
    swift_service = SWIFT_PREFIXES.get(f.package, "") + svc.name
    doc(e, comments.get((6, si)))
    e(f"public enum {swift_service} {{")
    e.indent()
    e(f'public static let name = "{full}"')
    e()
    e("/// The descriptor of every RPC, by method.")
    e("public enum Method {")
    e.indent()
    for mi, meth in enumerate(svc.method):
        access = method_access(comments.get((6, si, 2, mi), ""), f"{full}/{meth.name}")
        access_arg = f", access: .{access}" if access != "staff" else ""
        e(f'public static let {swift_ident(lower_camel(camel_to_lower(meth.name)))} = MethodDescriptor(service: "{full}", method: "{meth.name}"{access_arg})')
    e("public static let all: [MethodDescriptor] = [" + ", ".join(swift_ident(lower_camel(camel_to_lower(mm.name))) for mm in svc.method) + "]")
    e.dedent()
    e("}")
    e()
    e("/// What a server implements: one method per RPC. A streaming method reads its")
    e("/// requests from an `RPCMessageStream` and/or writes its responses to an `RPCWriter`.")
    e("public protocol Handler: RPCService {")
    e.indent()
    for mi, meth in enumerate(svc.method):
        doc(e, comments.get((6, si, 2, mi)))
        name = swift_ident(lower_camel(camel_to_lower(meth.name)))
        req = model.swift_name(meth.input_type)
        resp = model.swift_name(meth.output_type)
        if meth.client_streaming and meth.server_streaming:
            e(f"func {name}(_ requests: RPCMessageStream<{req}>, responses: RPCWriter<{resp}>, context: ServerContext) async throws")
        elif meth.client_streaming:
            e(f"func {name}(_ requests: RPCMessageStream<{req}>, context: ServerContext) async throws -> {resp}")
        elif meth.server_streaming:
            e(f"func {name}(_ request: {req}, responses: RPCWriter<{resp}>, context: ServerContext) async throws")
        else:
            e(f"func {name}(_ request: {req}, context: ServerContext) async throws -> {resp}")
    e.dedent()
    e("}")
    e()
    e("/// A typed client: one method per RPC, over any `RPCChannel`. A streaming method runs")
    e("/// `body` with the call and cancels the call if `body` leaves it unfinished.")
    e("public struct Client: Sendable {")
    e.indent()
    e("public let channel: any RPCChannel")
    e("public var defaultOptions: CallOptions")
    e()
    e("public init(channel: any RPCChannel, defaultOptions: CallOptions = CallOptions()) {")
    e.indent()
    e("self.channel = channel")
    e("self.defaultOptions = defaultOptions")
    e.dedent()
    e("}")
    for mi, meth in enumerate(svc.method):
        mname = swift_ident(lower_camel(camel_to_lower(meth.name)))
        req = model.swift_name(meth.input_type)
        resp = model.swift_name(meth.output_type)
        e()
        doc(e, comments.get((6, si, 2, mi)))
        if meth.client_streaming and meth.server_streaming:
            e(f"public func {mname}<Result: Sendable>(options: CallOptions? = nil, _ body: (RPCStreamingCall<{req}, {resp}>) async throws -> Result) async throws -> Result {{")
            e.indent()
            e(f"try await channel.bidirectional(Method.{mname}, options: options ?? defaultOptions, body)")
        elif meth.client_streaming:
            e(f"public func {mname}(options: CallOptions? = nil, _ body: (RPCWriter<{req}>) async throws -> Void) async throws -> {resp} {{")
            e.indent()
            e(f"try await channel.clientStreaming(Method.{mname}, options: options ?? defaultOptions, body)")
        elif meth.server_streaming:
            e(f"public func {mname}<Result: Sendable>(_ request: {req}, options: CallOptions? = nil, _ body: (RPCMessageStream<{resp}>) async throws -> Result) async throws -> Result {{")
            e.indent()
            e(f"try await channel.serverStreaming(Method.{mname}, request, options: options ?? defaultOptions, body)")
        else:
            e(f"public func {mname}(_ request: {req}, options: CallOptions? = nil) async throws(RPCError) -> {resp} {{")
            e.indent()
            e(f"try await channel.unary(Method.{mname}, request, options: options ?? defaultOptions)")
        e.dedent()
        e("}")
    e.dedent()
    e("}")
    e.dedent()
    e("}")
    e()
    e(f"extension {swift_service}.Handler {{")
    e.indent()
    e("public var routes: [RPCRoute] {")
    e.indent()
    e("[")
    e.indent()
    for meth in svc.method:
        mname = swift_ident(lower_camel(camel_to_lower(meth.name)))
        req = model.swift_name(meth.input_type)
        resp = model.swift_name(meth.output_type)
        if meth.client_streaming and meth.server_streaming:
            e(f"RPCRoute.bidirectionalStreaming({swift_service}.Method.{mname}) {{ (requests: RPCMessageStream<{req}>, responses: RPCWriter<{resp}>, context) in try await self.{mname}(requests, responses: responses, context: context) }},")
        elif meth.client_streaming:
            e(f"RPCRoute.clientStreaming({swift_service}.Method.{mname}) {{ (requests: RPCMessageStream<{req}>, context) -> {resp} in try await self.{mname}(requests, context: context) }},")
        elif meth.server_streaming:
            e(f"RPCRoute.serverStreaming({swift_service}.Method.{mname}) {{ (request: {req}, responses: RPCWriter<{resp}>, context) in try await self.{mname}(request, responses: responses, context: context) }},")
        else:
            e(f"RPCRoute.unary({swift_service}.Method.{mname}) {{ (request: {req}, context) in try await self.{mname}(request, context: context) }},")
    e.dedent()
    e("]")
    e.dedent()
    e("}")
    e.dedent()
    e("}")


HEADER = "// Generated by scripts/generate from {src}. Do not edit.\n"


def emit_descriptors(fds):
    """Every file's FileDescriptorProto (without source info), its imports and the symbols it
    declares, for server reflection. The bytes are base64 in string literals: large array
    literals cost the Swift compiler far more."""
    import base64

    e = Emitter()
    e(HEADER.format(src="proto/").rstrip("\n"))
    e("/// The descriptors of every proto/ file, for server reflection (MeshReflection).")
    e("public enum FileDescriptors {")
    e.indent()
    e("public struct File: Sendable {")
    e.indent()
    e("public let name: String")
    e("/// The serialized google.protobuf.FileDescriptorProto, base64.")
    e("public let base64: String")
    e("public let dependencies: [String]")
    e("/// Fully-qualified names of its services, methods, messages (nested too) and enums.")
    e("public let symbols: [String]")
    e("public let services: [String]")
    e.dedent()
    e("}")
    e()
    e("public static let files: [File] = [")
    e.indent()
    for f in sorted(fds.file, key=lambda f: f.name):
        plain = d.FileDescriptorProto()
        plain.CopyFrom(f)
        plain.ClearField("source_code_info")
        encoded = base64.b64encode(plain.SerializeToString(deterministic=True)).decode()
        symbols = []

        def walk(prefix, messages, enums):
            for m in messages:
                symbols.append(prefix + m.name)
                walk(prefix + m.name + ".", m.nested_type, m.enum_type)
            for en in enums:
                symbols.append(prefix + en.name)

        pkg = f.package + "." if f.package else ""
        walk(pkg, f.message_type, f.enum_type)
        services = [pkg + svc.name for svc in f.service]
        for svc in f.service:
            symbols.append(pkg + svc.name)
            symbols += [pkg + svc.name + "." + m.name for m in svc.method]
        e(f'File(name: "{f.name}", base64: "{encoded}",')
        e(f'     dependencies: [{", ".join(chr(34) + x + chr(34) for x in f.dependency)}],')
        e(f'     symbols: [{", ".join(chr(34) + x + chr(34) for x in sorted(symbols))}],')
        e(f'     services: [{", ".join(chr(34) + x + chr(34) for x in services)}]),')
    e.dedent()
    e("]")
    e.dedent()
    e("}")
    return e.text()


def emit_message_list(model, sources):
    """Every top-level message type, so that code that must see them all (the proto-decode fuzz target) cannot
    miss one added later."""
    e = Emitter()
    e(HEADER.format(src="proto/").rstrip("\n"))
    e("import MeshRPC")
    e()
    e("public enum GeneratedMessages {")
    e.indent()
    e("/// Every top-level message of proto/, file by file in name order, each file's in its own order.")
    e("public static let all: [any RPCMessage.Type] = [")
    e.indent()
    for f in sorted(model.files, key=lambda f: f.name):
        if f.name not in sources or f.package.startswith("grpc.reflection."):
            continue
        for m in f.message_type:
            e(f"{model.swift_name('.' + f.package + '.' + m.name)}.self,")
    e.dedent()
    e("]")
    e.dedent()
    e("}")
    return e.text()


def generate(fds_path, out_dir, sources):
    fds = d.FileDescriptorSet()
    with open(fds_path, "rb") as fh:
        fds.ParseFromString(fh.read())
    model = Model(fds)
    # Swift names are unqualified: refuse a set where two types would collide.
    seen = {}
    for full in list(model.messages) + list(model.enums):
        if full in model.messages and model.is_map_entry(full):
            continue
        if full.startswith(".grpc.reflection."):
            continue  # descriptor only: no Swift type
        n = model.swift_name(full)
        if n in seen:
            raise SystemExit(f"Swift name {n} used by both {seen[n]} and {full}")
        seen[n] = full
    outputs = {}
    for f in model.files:
        if f.name not in sources or f.package.startswith("grpc.reflection."):
            continue
        comments = comments_by_path(f)
        e = Emitter()
        e(HEADER.format(src="proto/" + f.name).rstrip("\n"))
        e("import CProtobufC")
        e("import ChatMeshProtoC")
        e("import MeshRPC")
        e("import NIOCore")
        for i, m in enumerate(f.message_type):
            e()
            emit_message(e, model, "." + f.package + "." + m.name, comments, [4, i])
        for i, en in enumerate(f.enum_type):
            e()
            emit_enum(e, model, "." + f.package + "." + en.name, comments, [5, i])
        for si, svc in enumerate(f.service):
            e()
            emit_service(e, model, f, si, svc, comments)
        fname = f.name.replace("/", "_").replace(".proto", ".pb.swift")
        outputs[fname] = e.text()
    outputs["FileDescriptors.swift"] = emit_descriptors(fds)
    outputs["GeneratedMessages.swift"] = emit_message_list(model, sources)
    with open(os.path.join(os.path.dirname(__file__), "PBRuntime.swift.in"), encoding="utf-8") as fh:
        outputs["PBRuntime.swift"] = HEADER.format(src="scripts/codegen/PBRuntime.swift.in") + fh.read()
    os.makedirs(out_dir, exist_ok=True)
    for name, text in sorted(outputs.items()):
        with open(os.path.join(out_dir, name), "w", encoding="utf-8") as fh:
            fh.write(text)


if __name__ == "__main__":
    if len(sys.argv) < 4:
        raise SystemExit("usage: swift_bridges.py DESCRIPTOR_SET OUT_DIR PROTO...")
    generate(sys.argv[1], sys.argv[2], set(sys.argv[3:]))
