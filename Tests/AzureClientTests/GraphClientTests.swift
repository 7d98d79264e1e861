import AzureEmulator
import AzureHTTP
import AzureIdentity
import FedBrokerCore
import Foundation
@testable import GraphClient
import Testing

/// The Graph FIC client against the emulator over HTTPS, with the Graph token obtained as the
/// broker obtains it: a slot's managed-identity assertion exchanged in the ISV tenant.
@Suite struct GraphClientTests {
    /// The client and the application's own Graph token through slot 0.
    struct Graph {
        let client: GraphClient
        let token: GraphClient.TokenProvider
        let app: GraphApplication
        let issuer: String
    }

    private func graph(_ f: ClientFixture, maxRetries: Int = 6) -> Graph {
        var configuration = GraphClient.Configuration()
        configuration.attemptTimeout = ClientFixture.attemptTimeout
        configuration.backoff = Backoff(initial: 1, maximum: 16, maxRetries: maxRetries)
        let provider = f.provider
        let source = f.source(0)
        let isv = f.scenario.isvTenantID
        return Graph(
            client: GraphClient(graphURL: f.environment.graphURL, httpClient: f.http, clock: f.clock, configuration: configuration),
            token: { deadline in try await provider.token(tenantID: isv, source: source, resource: GraphClient.resource, deadline: deadline).token },
            app: .objectID(f.scenario.appObjectID), issuer: "https://login.microsoftonline.com/\(isv)/v2.0")
    }

    /// Runs `body`, which must throw a `GraphError`, and returns it; a run that does not throw fails the test.
    private func graphError(_ body: () async throws -> Void) async -> GraphError? {
        do {
            try await body()
            Issue.record("expected a GraphError, but nothing was thrown")
            return nil
        } catch let error as GraphError {
            return error
        } catch {
            Issue.record("expected a GraphError, got \(error)")
            return nil
        }
    }

    @Test("create, get, list (by object id and by appId), then delete; the new credential works for token exchange")
    func createGetListDelete() async throws {
        try await withClients { f in
            let g = graph(f)
            let identity = try f.state.createManagedIdentity(tenantID: f.scenario.isvTenantID, name: "slot-3")
            let new = try NewFederatedIdentityCredential.managedIdentity(
                name: "fedbroker-fic-3", tenantID: f.scenario.isvTenantID, principalID: identity.principalId, description: "slot 3")
            let created = try await g.client.createFederatedIdentityCredential(new, in: g.app, token: g.token, deadline: f.deadline())
            #expect(!created.id.isEmpty)
            #expect(created.name == "fedbroker-fic-3")
            #expect(created.issuer == g.issuer)
            #expect(created.subject == identity.principalId)
            #expect(created.audiences == ["api://AzureADTokenExchange"])
            #expect(created.description == "slot 3")

            #expect(try await g.client.federatedIdentityCredential(named: "fedbroker-fic-3", of: g.app, token: g.token, deadline: f.deadline()) == created)
            let listed = try await g.client.listFederatedIdentityCredentials(of: g.app, token: g.token, deadline: f.deadline())
            #expect(listed.map(\.name).sorted() == ["fedbroker-fic-1", "fedbroker-fic-2", "fedbroker-fic-3"])
            #expect(listed.first { $0.name == "fedbroker-fic-1" }?.description == nil)
            let byAppID = try await g.client.listFederatedIdentityCredentials(
                of: .appID(f.scenario.appClientID), token: g.token, deadline: f.deadline())
            #expect(Set(byAppID) == Set(listed))

            // What the slot is for: the new identity's assertion now buys a customer's vault token.
            let vaultToken = try await f.provider.token(
                tenantID: f.scenario.customers[0].tenantID, source: f.source(clientID: identity.clientId), resource: "https://vault.azure.net",
                deadline: f.deadline())
            #expect(!vaultToken.token.isEmpty)

            try await g.client.deleteFederatedIdentityCredential(named: "fedbroker-fic-3", of: g.app, token: g.token, deadline: f.deadline())
            let gone = await graphError {
                _ = try await g.client.federatedIdentityCredential(named: "fedbroker-fic-3", of: g.app, token: g.token, deadline: f.deadline())
            }
            #expect(gone?.kind == .notFound)
            #expect(gone?.httpStatus == 404)
            // Deleting again: "already gone" is distinguishable, so a retiring job treats it as done.
            let again = await graphError {
                try await g.client.deleteFederatedIdentityCredential(named: "fedbroker-fic-3", of: g.app, token: g.token, deadline: f.deadline())
            }
            #expect(again?.kind == .notFound)
            #expect(again?.graphCode == "Request_ResourceNotFound")
            #expect(try await g.client.listFederatedIdentityCredentials(of: g.app, token: g.token, deadline: f.deadline()).count == 2)
        }
    }

    @Test("$filter by name, by subject, by issuer and subject, and on values with quotes and URL syntax")
    func filters() async throws {
        try await withClients { f in
            let g = graph(f)
            let awkward = "O'Brien & co=1#frag%20 ?x+y/'"
            _ = try await g.client.createFederatedIdentityCredential(
                NewFederatedIdentityCredential(name: "awkward", issuer: g.issuer, subject: awkward), in: g.app, token: g.token,
                deadline: f.deadline())
            func names(_ filter: FederatedIdentityCredentialFilter) async throws -> [String] {
                try await g.client.listFederatedIdentityCredentials(of: g.app, filter: filter, token: g.token, deadline: f.deadline())
                    .map(\.name).sorted()
            }
            let second = f.scenario.managedIdentities[1].principalId
            #expect(try await names(.init(name: "fedbroker-fic-1")) == ["fedbroker-fic-1"])
            #expect(try await names(.init(subject: second)) == ["fedbroker-fic-2"])
            #expect(try await names(.init(subject: second, issuer: g.issuer)) == ["fedbroker-fic-2"])
            #expect(try await names(.init(issuer: g.issuer)) == ["awkward", "fedbroker-fic-1", "fedbroker-fic-2"])
            #expect(try await names(.init(subject: awkward)) == ["awkward"])
            #expect(try await names(.init(subject: "O'Brien")) == [])
            #expect(try await names(.init(name: "fedbroker-fic-1", subject: second)) == [])
        }
    }

    @Test("the 21st credential is refused as credentialLimitReached, with Graph's code, message and request id kept")
    func twentyFirstCredentialIsRefused() async throws {
        try await withClients { f in
            let g = graph(f)
            for index in 3...20 {
                _ = try await g.client.createFederatedIdentityCredential(
                    NewFederatedIdentityCredential(name: "slot-\(index)", issuer: g.issuer, subject: "principal-\(index)"), in: g.app,
                    token: g.token, deadline: f.deadline())
            }
            let refused = await graphError {
                _ = try await g.client.createFederatedIdentityCredential(
                    NewFederatedIdentityCredential(name: "slot-21", issuer: g.issuer, subject: "principal-21"), in: g.app, token: g.token,
                    deadline: f.deadline())
            }
            #expect(refused?.kind == .credentialLimitReached)
            #expect(refused?.code == "credential_limit_reached")
            #expect(refused?.httpStatus == 400)
            #expect(refused?.graphCode == "Request_BadRequest")
            #expect(refused?.graphMessage == "The maximum number of federated identity credentials (20) for this application has been reached.")
            #expect(refused?.requestID?.isEmpty == false)
            #expect(refused?.isRetryable == false)
        }
    }

    @Test("a taken name is nameConflict (409); a taken issuer and subject is duplicateIssuerSubject (400)")
    func conflicts() async throws {
        try await withClients { f in
            let g = graph(f)
            let first = f.scenario.managedIdentities[0].principalId
            let sameName = await graphError {
                _ = try await g.client.createFederatedIdentityCredential(
                    NewFederatedIdentityCredential(name: "fedbroker-fic-1", issuer: g.issuer, subject: "someone-else"), in: g.app,
                    token: g.token, deadline: f.deadline())
            }
            #expect(sameName?.kind == .nameConflict)
            #expect(sameName?.httpStatus == 409)
            let samePair = await graphError {
                _ = try await g.client.createFederatedIdentityCredential(
                    NewFederatedIdentityCredential(name: "another-name", issuer: g.issuer, subject: first), in: g.app, token: g.token,
                    deadline: f.deadline())
            }
            #expect(samePair?.kind == .duplicateIssuerSubject)
            #expect(samePair?.httpStatus == 400)
            #expect(samePair?.graphCode == "InvalidFederatedIdentityCredentialValue")
        }
    }

    @Test("without Graph's Application.ReadWrite.OwnedBy the application gets insufficientPrivileges (403)")
    func revokedPermission() async throws {
        try await withClients { f in
            try f.state.updateGraphPermissions(appID: f.scenario.appClientID, revoke: [GraphPermissions.applicationReadWriteOwnedBy])
            let g = graph(f)
            let denied = await graphError {
                _ = try await g.client.listFederatedIdentityCredentials(of: g.app, token: g.token, deadline: f.deadline())
            }
            #expect(denied?.kind == .insufficientPrivileges)
            #expect(denied?.httpStatus == 403)
            #expect(denied?.graphCode == "Authorization_RequestDenied")
            #expect(denied?.graphMessage == "Insufficient privileges to complete the operation.")
        }
    }

    @Test("429s with Retry-After are waited out within the deadline, then the create succeeds")
    func throttledThenSucceeds() async throws {
        try await withClients { f in
            let g = graph(f)
            _ = try await g.client.listFederatedIdentityCredentials(of: g.app, token: g.token, deadline: f.deadline())  // token cached
            f.state.faults.add(FaultRule(service: .graph, operation: "create", status: 429, remaining: 2, retryAfterSeconds: 3))
            let start = f.clock.now
            let created = try await g.client.createFederatedIdentityCredential(
                NewFederatedIdentityCredential(name: "after-throttling", issuer: g.issuer, subject: "principal-t"), in: g.app,
                token: g.token, deadline: f.deadline())
            #expect(created.name == "after-throttling")
            #expect(f.state.faults.all.isEmpty)  // both injected 429s were met
            #expect(abs(f.clock.now.timeIntervalSince(start) - 6) < 0.001)  // two waits of Retry-After: 3
            #expect(f.counter("graph.fic.create") == 1)
        }
    }

    @Test("persistent 429s end in throttled with Graph's Retry-After; a huge Retry-After is clamped and not waited past the deadline")
    func persistentThrottling() async throws {
        try await withClients { f in
            let g = graph(f, maxRetries: 3)
            _ = try await g.client.listFederatedIdentityCredentials(of: g.app, token: g.token, deadline: f.deadline())  // token cached
            f.state.faults.add(FaultRule(service: .graph, operation: "list", status: 429, remaining: 4, retryAfterSeconds: 7))
            let start = f.clock.now
            let throttled = await graphError {
                _ = try await g.client.listFederatedIdentityCredentials(of: g.app, token: g.token, deadline: f.deadline())
            }
            #expect(throttled?.kind == .throttled(retryAfter: 7))
            #expect(throttled?.httpStatus == 429)
            #expect(abs(f.clock.now.timeIntervalSince(start) - 21) < 0.001)  // three retries, 7 s apart
            #expect(f.state.faults.all.isEmpty)  // four attempts in all

            f.state.faults.add(FaultRule(service: .graph, operation: "list", status: 429, remaining: 1, retryAfterSeconds: 86_400))
            let before = f.clock.now
            let clamped = await graphError {
                _ = try await g.client.listFederatedIdentityCredentials(of: g.app, token: g.token, deadline: f.deadline(30))
            }
            #expect(clamped?.kind == .throttled(retryAfter: 60))
            #expect(f.clock.now == before)  // 60 s would end past the 30 s deadline: no wait at all
        }
    }

    @Test("ids, names and the Graph URL are checked before anything is sent")
    func invalidArgumentsAreRefusedBeforeSending() async throws {
        try await withClients { f in
            let g = graph(f)
            let badApp = await graphError {
                _ = try await g.client.listFederatedIdentityCredentials(of: .objectID("../../me"), token: g.token, deadline: f.deadline())
            }
            #expect(badApp?.kind == .invalidArgument)
            let badAppID = await graphError {
                _ = try await g.client.listFederatedIdentityCredentials(of: .appID("x') or true"), token: g.token, deadline: f.deadline())
            }
            #expect(badAppID?.kind == .invalidArgument)
            let badName = await graphError {
                try await g.client.deleteFederatedIdentityCredential(named: "a'/b", of: g.app, token: g.token, deadline: f.deadline())
            }
            #expect(badName?.kind == .invalidArgument)
            let badCredential = await graphError {
                _ = try await g.client.createFederatedIdentityCredential(
                    NewFederatedIdentityCredential(name: "ok-name", issuer: " \(g.issuer)", subject: "s"), in: g.app, token: g.token,
                    deadline: f.deadline())
            }
            #expect(badCredential?.kind == .invalidArgument)
            let plain = GraphClient(graphURL: "http://127.0.0.1:1", httpClient: f.http, clock: f.clock)
            let insecure = await graphError {
                _ = try await plain.listFederatedIdentityCredentials(of: g.app, token: g.token, deadline: f.deadline())
            }
            #expect(insecure?.kind == .invalidArgument)
            #expect(f.counter("graph.fic.list") == 0)
            #expect(f.counter("graph.fic.create") == 0)
            #expect(f.counter("graph.fic.delete") == 0)
        }
    }
}

/// The pieces of the client that need no server.
@Suite struct GraphClientPureTests {
    @Test("filter values are OData literals: quotes doubled, clauses joined by and")
    func filterExpression() {
        #expect(FederatedIdentityCredentialFilter().expression == nil)
        #expect(FederatedIdentityCredentialFilter(name: "a").expression == "name eq 'a'")
        #expect(
            FederatedIdentityCredentialFilter(name: "n", subject: "O'B", issuer: "i").expression
                == "name eq 'n' and subject eq 'O''B' and issuer eq 'i'")
        #expect(AzureHTTP.percentEncoded("eq 'a&b'#/?") == "eq%20%27a%26b%27%23%2F%3F")
        #expect(AzureHTTP.percentEncoded("Key-1._~az09") == "Key-1._~az09")
        #expect(AzureHTTP.percentEncoded("clé") == "cl%C3%A9")
        #expect(AzureHTTP.percentEncoded("") == "")
    }

    @Test("Graph's message is bounded to 256 characters with control characters escaped")
    func boundedMessage() {
        #expect(BoundedText.escaped("line\nforged\u{7}") == "line\\u{a}forged\\u{7}")
        let long = BoundedText.escaped(String(repeating: "x", count: 10_000))
        #expect(long.unicodeScalars.count == 256)
        #expect(long.hasSuffix("…"))
        #expect(BoundedText.escaped(String(repeating: "y", count: 256)) == String(repeating: "y", count: 256))
    }

    @Test("Graph's code and request id, like its message, are bounded and escaped before they reach a description, a log or a job")
    func boundedCodeAndRequestID() {
        let error = GraphError(
            kind: .invalidRequest, httpStatus: 400, graphCode: "Bad\nforged line \u{1B}[31m" + String(repeating: "c", count: 5_000),
            graphMessage: "m\r\n", requestID: "rid\n" + String(repeating: "r", count: 5_000), clientRequestID: "c")
        #expect(error.graphCode?.hasPrefix("Bad\\u{a}forged line \\u{1b}[31m") == true)
        #expect((error.graphCode?.unicodeScalars.count ?? 0) <= 128)
        #expect(error.requestID?.hasPrefix("rid\\u{a}") == true)
        #expect((error.requestID?.unicodeScalars.count ?? 0) <= 128)
        #expect(!error.description.unicodeScalars.contains { $0.properties.generalCategory == .control })
        #expect(error.description.utf8.count < 400)
    }

    @Test("Retry-After is clamped to 0...maximum; NaN and absence are no hint")
    func clampedRetryAfter() {
        #expect(GraphError.clampedRetryAfter(5, maximum: 60) == 5)
        #expect(GraphError.clampedRetryAfter(1e300, maximum: 60) == 60)
        #expect(GraphError.clampedRetryAfter(.infinity, maximum: 60) == 60)
        #expect(GraphError.clampedRetryAfter(-3, maximum: 60) == 0)
        #expect(GraphError.clampedRetryAfter(.nan, maximum: 60) == nil)
        #expect(GraphError.clampedRetryAfter(nil, maximum: 60) == nil)
    }

    @Test("status and Graph's code classify; the limit is recognised by its message")
    func classification() {
        #expect(GraphError.classify(status: 403, graphCode: "Authorization_RequestDenied", message: "", retryAfter: nil) == .insufficientPrivileges)
        #expect(
            GraphError.classify(
                status: 400, graphCode: "Request_BadRequest",
                message: "The maximum number of federated identity credentials (20) for this application has been reached.", retryAfter: nil)
                == .credentialLimitReached)
        #expect(
            GraphError.classify(
                status: 400, graphCode: "InvalidFederatedIdentityCredentialValue",
                message: "The combination of issuer and subject must be unique for the application.", retryAfter: nil) == .duplicateIssuerSubject)
        #expect(GraphError.classify(status: 400, graphCode: "Request_BadRequest", message: "Federated Identity Credential name 'x' is invalid.", retryAfter: nil) == .invalidRequest)
        #expect(GraphError.classify(status: 409, graphCode: nil, message: "", retryAfter: nil) == .nameConflict)
        #expect(GraphError.classify(status: 429, graphCode: nil, message: "", retryAfter: 4) == .throttled(retryAfter: 4))
        #expect(GraphError.classify(status: 503, graphCode: nil, message: "", retryAfter: nil) == .server(status: 503))
        #expect(GraphError(kind: .server(status: 503), clientRequestID: "c").isRetryable)
        #expect(!GraphError(kind: .server(status: 500), clientRequestID: "c").isRetryable)
        #expect(GraphError(kind: .transport(.connectionFailed("reset")), clientRequestID: "c").isRetryable)
        #expect(!GraphError(kind: .transport(.tls("untrusted")), clientRequestID: "c").isRetryable)
    }

    @Test("managed-identity credentials: the tenant's v2.0 issuer, the principal id, one audience; GUIDs required")
    func managedIdentityCredential() throws {
        let tenant = "3d1e2be9-a10a-4a0c-8380-7ce190f98ed9"
        let principal = "a7d388c3-5e3f-4959-ac7d-786b3383006a"
        let credential = try NewFederatedIdentityCredential.managedIdentity(name: "fic-1", tenantID: tenant, principalID: principal)
        #expect(credential.issuer == "https://login.microsoftonline.com/\(tenant)/v2.0")
        #expect(credential.subject == principal)
        #expect(credential.audiences == ["api://AzureADTokenExchange"])
        #expect(credential.jsonBody == #"{"audiences":["api://AzureADTokenExchange"],"issuer":"https://login.microsoftonline.com/\#(tenant)/v2.0","name":"fic-1","subject":"\#(principal)"}"#)
        #expect(throws: GraphError(kind: .invalidArgument, clientRequestID: "none")) {
            _ = try NewFederatedIdentityCredential.managedIdentity(name: "fic-1", tenantID: "contoso", principalID: principal)
        }
        #expect(NewFederatedIdentityCredential.isValidName("fic_1-a"))
        #expect(!NewFederatedIdentityCredential.isValidName("-fic"))
        #expect(!NewFederatedIdentityCredential.isValidName("ab"))
        #expect(!NewFederatedIdentityCredential.isValidName("fïc-1"))
    }
}
