import Foundation

// libFuzzer target: token verification (MeshRPC/Auth.swift) on whatever arrives in `authorization`.
// Beyond not crashing: nothing the fuzzer makes verifies unless it is a token the mesh's key signed
// (the seed corpus holds some), and what verifies is a principal that mints to a token that verifies.
let verifier = TokenVerifier(key: "fuzz-key")
let signer = TokenSigner(key: "fuzz-key")

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzTokenVerification(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let text = String(decoding: UnsafeBufferPointer(start: data, count: size), as: UTF8.self)
    for header in [text, "Bearer " + text] {
        guard let principal = try? verifier.verify(authorization: header) else { continue }
        precondition(header.hasPrefix("Bearer ") || header.hasPrefix("bearer "), "verified without a Bearer scheme")
        let again = try? verifier.verify(authorization: "Bearer " + signer.mint(principal))
        precondition(again == principal, "a verified principal does not survive minting")
    }
    return 0
}
