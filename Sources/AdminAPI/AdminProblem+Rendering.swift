import AdminAPIModel
import Foundation
import HTTPTypes

extension AdminProblem {
    /// The problem+json document.
    func json(instance: String?) -> Data {
        let body = Components.Schemas.Problem(
            _type: self.type, title: self.title, status: self.status.code, detail: self.detail,
            instance: instance.map { String($0.prefix(256)) }, code: self.code)
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        return (try? encoder.encode(body)) ?? Data("{}".utf8)
    }

    var responseHead: HTTPResponse {
        var response = HTTPResponse(status: self.status)
        response.headerFields[.contentType] = "application/problem+json"
        if self.status == .unauthorized {
            response.headerFields[.wwwAuthenticate] = "Bearer error=\"invalid_token\""
        }
        return response
    }
}
